"""Inference throughput, project path vs fp32 eager, at the default or paper size.

    .venv/bin/python bench/infer_throughput.py [--dims default] [--docs N] [--repeats 3]
                                               [--threads N]

Model (`--dims`, bench/_kernels.py DIMS): `default` (params.yaml: E=64, 64 filters of widths
3/4/5, adaptation 256, 71 codes, 700 tokens; 400 notes) or `paper` (E=300, 300 filters,
adaptation 512, 1,231 codes, 6,000 tokens; 96 notes). Same synthetic notes, same weights:

* fp32 eager (baseline, written here): torch.no_grad, batches in input order, each padded to
  its longest note, fp32, the textbook encoder (full feature maps, masked_fill, amax);
* project: icdtransfer.train.loop.predict (inference_mode, length-bucketed batches of
  `--batch`, 16 by default as in validation, `precision: auto` and the kernel chosen with it,
  printed with the timings that chose them; max-pool without positions), which
  `icdtransfer predict` also uses; the baseline keeps batches of 16.

Checks that both give the same top code for every note, prints docs/s for both, the project's
achieved GFLOP/s (forward convolutions, bench/_kernels.py) and `efficiency:` = that rate over
this machine's fp32 matmul peak measured in the same run; the last line is
`ratio: <project / fp32 eager>` (goals: ratio >= 1.5, efficiency >= 0.7, issue 19).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from _kernels import DIMS, conv_forward_flops, fp32_matmul_rates, kernel_line, peak, textbook
from _synthetic import synthetic_notes
from icdtransfer.model.cnn import TargetModel
from icdtransfer.train.loop import predict
from icdtransfer.train.precision import choose, use_bf16

BASELINE_BATCH = 16


def eager(model: TargetModel, notes, batch_size: int, max_tokens: int) -> np.ndarray:
    model.eval()
    n = len(notes.offsets) - 1
    out = []
    with torch.no_grad():
        for b in range(0, n, batch_size):
            seqs = [notes.document(i)[:max_tokens] for i in range(b, min(b + batch_size, n))]
            width = max(len(s) for s in seqs)
            tokens = np.zeros((len(seqs), width), dtype=np.int64)
            for row, s in enumerate(seqs):
                tokens[row, : len(s)] = s
            lengths = torch.tensor([len(s) for s in seqs])
            out.append(torch.sigmoid(model(torch.from_numpy(tokens), lengths)).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", choices=sorted(DIMS), default="default")
    parser.add_argument("--docs", type=int, default=0, help="0: 400 (default), 96 (paper)")
    parser.add_argument("--batch", type=int, default=16, help="the project's batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dims = DIMS[args.dims]
    shape, labels, max_tokens = dims["shape"], dims["labels"], dims["max_tokens"]
    args.docs = args.docs or (400 if args.dims == "default" else 96)
    load = os.getloadavg()[0]
    before = fp32_matmul_rates()
    torch.manual_seed(0)
    notes = synthetic_notes(
        args.docs, 1, dims["mean_length"], labels, dims["codes_per_note"], shape.vocab_size
    )
    model = TargetModel(shape, labels, dims["adaptation"], dims["dropout"]).eval()
    baseline_model = textbook(model)
    precision = choose("auto", torch.device("cpu"), shape)
    use_bf16("auto", torch.device("cpu"), model)  # sets the chosen kernel
    docs = np.arange(args.docs)
    base_times, our_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        reference = eager(baseline_model, notes, BASELINE_BATCH, max_tokens)
        base_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ours = predict(
            model, notes, docs, args.batch, max_tokens, 5, torch.device("cpu"), precision.bf16
        )
        our_times.append(time.perf_counter() - start)
    agree = float(np.mean(reference.argmax(1) == ours.argmax(1)))
    base, project = args.docs / min(base_times), args.docs / min(our_times)
    lengths = np.minimum(np.diff(notes.offsets), max_tokens)
    forward = conv_forward_flops(lengths, shape.embedding_dim, shape.filters, shape.widths)
    achieved = forward / min(our_times) / 1e9
    peak_rate, peak_text = peak(before, fp32_matmul_rates())
    print(
        f"notes: {args.docs}, mean length {np.diff(notes.offsets).mean():.0f} tokens "
        f"({lengths.mean():.0f} after truncation), batch {args.batch}, torch threads "
        f"{torch.get_num_threads()}, load average {load:.1f} -> {os.getloadavg()[0]:.1f} "
        f"(2 cores shared), "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    print(f"fp32 matmul peak: {peak_text}")
    print(f"dimensions: {args.dims} ({shape}, {labels} codes, {max_tokens} tokens)")
    print(kernel_line(precision))
    print(
        f"max |probability difference|: {np.abs(reference - ours).max():.4f}; "
        f"same top code for {agree:.0%} of notes"
    )
    print(f"fp32 eager: {base:.2f} docs/s")
    print(
        f"icdtransfer predict ({precision.name}, {precision.kernel} kernel, bucketed batches "
        f"of {args.batch}): {project:.2f} docs/s"
    )
    print(
        f"FLOPs per note: {forward / args.docs / 1e9:.3f} G forward convolution; achieved "
        f"{achieved:.0f} GFLOP/s (fp32 eager: {forward / min(base_times) / 1e9:.0f} GFLOP/s)"
    )
    print(f"efficiency: {achieved / peak_rate:.2f}")
    print(f"ratio: {project / base:.2f}")


if __name__ == "__main__":
    main()
