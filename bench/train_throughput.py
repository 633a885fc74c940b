"""Stage-2 training throughput at the paper's model size, project loop vs a naive loop.

    .venv/bin/python bench/train_throughput.py [--docs 48] [--batch 16] [--epochs 1]

Model: the paper's dimensions (E=300, 300 filters of widths 3/4/5, adaptation 512, 1,231 codes,
word dropout 0.3, 6,000-token truncation) on synthetic notes of ~5,300 tokens. Both loops
train the same model from the same initial weights on the same notes:

* naive (baseline, written here): fp32, random batches padded to their longest note, word
  dropout applied as a mask after padding (dropped words still cost compute);
* project: icdtransfer.train.loop.train_epoch (length-bucketed batches, word dropout before
  padding, bf16 autocast where the CPU has AVX512-BF16/AMX).

Prints docs/s for both; the last line is `ratio: <project / naive>` (goal: at least 2).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from _synthetic import LABELS, MAX_TOKENS, VOCAB, synthetic_notes
from icdtransfer.model.cnn import EncoderShape, TargetModel
from icdtransfer.train.batches import multi_hot
from icdtransfer.train.hardware import bf16_supported
from icdtransfer.train.loop import LoopSettings, make_optimizer, train_epoch

WORD_DROPOUT = 0.3


def naive_epoch(model: TargetModel, notes, batch_size: int, seed: int) -> float:
    """The reference: no bucketing, fp32, word dropout as a mask on the padded batch."""
    rng = np.random.default_rng(seed)
    optimizer = make_optimizer(model, "adam", 1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    order = rng.permutation(len(notes.offsets) - 1)
    start = time.perf_counter()
    for b in range(0, len(order), batch_size):
        docs = order[b : b + batch_size]
        seqs = [notes.document(int(i))[:MAX_TOKENS] for i in docs]
        width = max(len(s) for s in seqs)
        tokens = np.zeros((len(seqs), width), dtype=np.int64)
        for row, s in enumerate(seqs):
            tokens[row, : len(s)] = s
        tokens[rng.random(tokens.shape) < WORD_DROPOUT] = 0  # dropped words become padding
        lengths = torch.tensor([len(s) for s in seqs])
        labels = torch.from_numpy(multi_hot(notes.labels, docs))
        optimizer.zero_grad()
        loss = loss_fn(model(torch.from_numpy(tokens), lengths), labels)
        loss.backward()
        optimizer.step()
    return len(order) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    notes = synthetic_notes(args.docs)
    shape = EncoderShape(VOCAB, 300, 300, (3, 4, 5))
    initial = TargetModel(shape, LABELS, 512, 0.5)
    settings = LoopSettings(
        optimizer="adam",
        learning_rate=1e-3,
        batch_size=args.batch,
        epochs=args.epochs,
        patience=1,
        seed=0,
        precision="auto",
        device="cpu",
        bucket=True,
        max_tokens=MAX_TOKENS,
        word_dropout=WORD_DROPOUT,
        min_length=5,
    )
    bf16 = bf16_supported(torch.device("cpu"))
    docs = np.arange(args.docs)
    naive_rates, project_rates = [], []
    for epoch in range(args.epochs):
        naive_rates.append(naive_epoch(copy.deepcopy(initial), notes, args.batch, epoch))
        model = copy.deepcopy(initial)
        optimizer = make_optimizer(model, "adam", 1e-3)
        _, rate = train_epoch(
            model, notes, docs, optimizer, settings, epoch, torch.device("cpu"), bf16
        )
        project_rates.append(rate)
    naive, project = max(naive_rates), max(project_rates)
    print(
        f"notes: {args.docs}, mean length {np.diff(notes.offsets).mean():.0f} tokens, "
        f"batch {args.batch}, torch threads {torch.get_num_threads()}"
    )
    print(f"naive loop (fp32, pad to longest, word dropout after padding): {naive:.2f} docs/s")
    print(
        f"icdtransfer train_epoch (bucketed, dropout before padding, "
        f"{'bf16' if bf16 else 'fp32'}): {project:.2f} docs/s"
    )
    print(f"ratio: {project / naive:.2f}")


if __name__ == "__main__":
    main()
