"""Label-attention pooling against max pooling: one stage-2 training step (forward, backward,
Adam) at the default shapes, both in this script, alternately.

    .venv/bin/python bench/pooling.py [--steps 20] [--rounds 3] [--codes 71] [--threads 1]

Default shapes (params.yaml): batch 16, 400 tokens, vocabulary 27,026, E=64, 64 filters of
widths 3/4/5, adaptation 256, 71 codes, fp32 on the CPU. Random token ids; every document
full length (the slowest case for both). Prints the median seconds per step of each pooling
over `--rounds` rounds of `--steps` steps and their ratio (label_attention / max): issue 22
asks that label attention's backward not undo max pooling's speed; this measures by how much
it is slower. `--codes 50` is MIMIC-III top-50's label count.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
from icdtransfer.model.cnn import TargetModel  # noqa: E402
from icdtransfer.model_meta import EncoderShape  # noqa: E402

VOCAB, BATCH, TOKENS = 27_026, 16, 400


def step_seconds(model: TargetModel, tokens, lengths, targets, steps: int) -> float:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        optimiser.zero_grad(set_to_none=True)
        loss_fn(model(tokens, lengths), targets).backward()
        optimiser.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--codes", type=int, default=71)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = EncoderShape(vocab_size=VOCAB, embedding_dim=64, filters=64, widths=(3, 4, 5))
    tokens = torch.randint(1, VOCAB, (BATCH, TOKENS))
    lengths = torch.full((BATCH,), TOKENS)
    targets = (torch.rand(BATCH, args.codes) < 0.05).float()
    models = {
        p: TargetModel(shape, args.codes, 256, 0.1, pooling=p) for p in ("max", "label_attention")
    }
    for model in models.values():  # warm-up: allocator, oneDNN primitives
        step_seconds(model, tokens, lengths, targets, 2)
    times: dict[str, list[float]] = {p: [] for p in models}
    for _ in range(args.rounds):
        for pooling, model in models.items():
            times[pooling].append(step_seconds(model, tokens, lengths, targets, args.steps))
    median = {p: statistics.median(t) for p, t in times.items()}
    print(f"batch {BATCH} x {TOKENS} tokens, {args.codes} codes, {args.threads} thread(s), fp32")
    for pooling, seconds in median.items():
        print(f"  {pooling:16s} {seconds * 1000:8.1f} ms/step (median of {args.rounds})")
    print(f"  ratio label_attention / max: {median['label_attention'] / median['max']:.2f}")


if __name__ == "__main__":
    main()
