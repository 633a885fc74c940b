"""Stage-2 training throughput, project loop vs a naive loop, at the default or paper size.

    .venv/bin/python bench/train_throughput.py [--dims default] [--docs N] [--epochs 2]
                                               [--threads N]

Model (`--dims`, bench/_kernels.py DIMS): `default`, params.yaml's (E=64, 64 filters of widths
3/4/5, adaptation 256, 71 codes, 700-token truncation, notes of ~1,268 words; 200 notes) or
`paper`, presets/paper.yaml's (E=300, 300 filters, adaptation 512, 1,231 codes, 6,000 tokens,
notes of ~5,300 tokens; 48 notes); word dropout 0.3, batch 16, Adam. Both loops
train the same model from the same initial weights on the same notes:

* naive (baseline, written here): fp32, random batches padded to their longest note, word
  dropout applied as a mask after padding (dropped words still cost compute), the textbook
  encoder (full feature maps, autograd's dense backward through the max-pool);
* project: icdtransfer.train.loop.train_epoch (length-bucketed batches, word dropout before
  padding, the encoder's sparse max-pool backward, fused Adam, `precision: auto` and the
  convolution kernel measured fastest with it: printed, with the timings that chose them).

Each loop runs `--epochs` times; the best epoch counts. Prints docs/s for both, the project's
achieved GFLOP/s (FLOP convention in bench/_kernels.py) and `efficiency:` = that rate over this
machine's fp32 matmul peak measured in the same run; the last line is
`ratio: <project / naive>` (goals: ratio >= 2; efficiency >= 0.7, issue 19).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from _kernels import (
    DIMS,
    conv_forward_flops,
    fp32_matmul_rates,
    kernel_line,
    peak,
    sparse_backward_flops,
    textbook,
)
from _synthetic import synthetic_notes
from icdtransfer.model.cnn import TargetModel
from icdtransfer.train.loop import LoopSettings, make_optimizer, train_epoch
from icdtransfer.train.precision import choose, use_bf16

WORD_DROPOUT = 0.3


def naive_epoch(model: TargetModel, notes, batch_size: int, seed: int, max_tokens: int) -> float:
    """The reference: no bucketing, fp32, word dropout as a mask on the padded batch."""
    rng = np.random.default_rng(seed)
    optimizer = make_optimizer(model, "adam", 1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    order = rng.permutation(len(notes.offsets) - 1)
    start = time.perf_counter()
    for b in range(0, len(order), batch_size):
        docs = order[b : b + batch_size]
        seqs = [notes.document(int(i))[:max_tokens] for i in docs]
        width = max(len(s) for s in seqs)
        tokens = np.zeros((len(seqs), width), dtype=np.int64)
        for row, s in enumerate(seqs):
            tokens[row, : len(s)] = s
        tokens[rng.random(tokens.shape) < WORD_DROPOUT] = 0  # dropped words become padding
        lengths = torch.tensor([len(s) for s in seqs])
        labels = torch.from_numpy(notes.labels[docs].toarray().astype(np.float32))
        optimizer.zero_grad()
        loss = loss_fn(model(torch.from_numpy(tokens), lengths), labels)
        loss.backward()
        optimizer.step()
    return len(order) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", choices=sorted(DIMS), default="default")
    parser.add_argument("--docs", type=int, default=0, help="0: 200 (default), 48 (paper)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dims = DIMS[args.dims]
    shape, labels, max_tokens = dims["shape"], dims["labels"], dims["max_tokens"]
    args.docs = args.docs or (200 if args.dims == "default" else 48)
    load = os.getloadavg()[0]
    before = fp32_matmul_rates()
    torch.manual_seed(0)
    notes = synthetic_notes(
        args.docs, 0, dims["mean_length"], labels, dims["codes_per_note"], shape.vocab_size
    )
    initial = TargetModel(shape, labels, dims["adaptation"], dims["dropout"])
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
        max_tokens=max_tokens,
        word_dropout=WORD_DROPOUT,
        min_length=max(shape.widths),
    )
    precision = choose("auto", torch.device("cpu"), shape)
    docs = np.arange(args.docs)
    naive_rates, project_rates, seen = [], [], []
    for epoch in range(args.epochs):
        naive_rates.append(naive_epoch(textbook(initial), notes, args.batch, epoch, max_tokens))
        model = TargetModel(shape, labels, dims["adaptation"], dims["dropout"])
        model.load_state_dict(initial.state_dict())
        use_bf16("auto", torch.device("cpu"), model)  # sets the chosen kernel
        optimizer = make_optimizer(model, "adam", 1e-3)
        seen.append([])  # the lengths the encoder is given, for the FLOP count
        model.encoder.register_forward_pre_hook(lambda _, args: seen[-1].append(args[1]))
        _, rate = train_epoch(
            model, notes, docs, optimizer, settings, epoch, torch.device("cpu"), precision.bf16
        )
        project_rates.append(rate)
    best = int(np.argmax(project_rates))
    naive, project = naive_rates[int(np.argmax(naive_rates))], project_rates[best]
    lengths = torch.cat(seen[best]).numpy()
    forward = conv_forward_flops(lengths, shape.embedding_dim, shape.filters, shape.widths)
    backward = sparse_backward_flops(len(lengths), shape.embedding_dim, shape.filters, shape.widths)
    seconds = args.docs / project
    achieved = (forward + backward) / seconds / 1e9
    peak_rate, peak_text = peak(before, fp32_matmul_rates())
    print(
        f"notes: {args.docs}, mean length {np.diff(notes.offsets).mean():.0f} tokens, "
        f"{lengths.mean():.0f} after truncation and word dropout, batch {args.batch}, "
        f"torch threads {torch.get_num_threads()}, load average {load:.1f} -> "
        f"{os.getloadavg()[0]:.1f} (2 cores shared), "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    print(f"fp32 matmul peak: {peak_text}")
    print(f"dimensions: {args.dims} ({shape}, {labels} codes, {max_tokens} tokens)")
    print(kernel_line(precision))
    print(f"naive loop (fp32, pad to longest, word dropout after padding): {naive:.2f} docs/s")
    print(f"icdtransfer train_epoch ({precision.name}): {project:.2f} docs/s")
    print(
        f"FLOPs per note: {forward / args.docs / 1e9:.3f} G forward convolution + "
        f"{backward / args.docs / 1e9:.3f} G sparse max-pool backward "
        f"(a dense backward would add {2 * forward / args.docs / 1e9:.3f} G)"
    )
    print(
        f"achieved: {achieved:.0f} GFLOP/s executed "
        f"({3 * forward / seconds / 1e9:.0f} GFLOP/s dense-equivalent)"
    )
    print(f"efficiency: {achieved / peak_rate:.2f}")
    print(f"ratio: {project / naive:.2f}")


if __name__ == "__main__":
    main()
