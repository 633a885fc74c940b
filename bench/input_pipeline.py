"""Notes per second the input pipeline alone delivers at paper scale, against what one H100
consumes in stage-2 training.

    .venv/bin/python bench/input_pipeline.py [--notes 71463] [--batches 200] [--repeats 3]

Corpus: 71,463 synthetic notes as token arrays (lognormal lengths around the paper's 5,303
words, most near the 6,000-token cut; bench/_synthetic.py), 1,231 codes. Batches of 50 (the
paper's), truncation at 6,000 tokens, word dropout 0.3, as in presets/paper.yaml.

Measured on this CPU, device work excluded:

* baseline: the per-document Python collate the project used before issue 11 (truncate, word
  dropout with numpy, pad, multi-hot labels; the whole batch built on the host);
* project: the host half of icdtransfer.train.batches (the epoch's batch order, each batch's
  truncated documents copied back to back, the labels' CSR entries). With CUDA that one copy
  goes straight into page-locked memory (torch's caching host allocator); this CPU-only torch
  cannot pin, so it goes into ordinary memory. Word dropout, padding and multi-hot labels are
  device work (`materialize`), not counted; their rate on this CPU is printed for CPU training.

Needed: FLOPs per training note at paper scale (the executed count of bench/_kernels.py:
forward convolutions at the lengths left after word dropout, plus the sparse max-pool
backward), at 40% of an H100 SXM's dense bf16 peak (989 TFLOP/s). The last line is
`ratio: <delivered / needed>` (goal: at least 1).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from _kernels import conv_forward_flops, sparse_backward_flops
from _synthetic import MAX_TOKENS, synthetic_notes
from icdtransfer.train.batches import batch_order, host_batches, materialize, truncated_lengths

BATCH, WORD_DROPOUT = 50, 0.3
E, FILTERS, WIDTHS = 300, 300, (3, 4, 5)
H100_BF16_DENSE = 989.4e12  # FLOP/s, H100 SXM5 datasheet (without sparsity)
UTILISATION = 0.4


def per_document_collate(notes, docs: np.ndarray, rng: np.random.Generator) -> tuple:
    """The pre-issue-11 batch: built document by document in Python on the host."""
    seqs = []
    for i in docs:
        seq = np.asarray(notes.document(int(i))[:MAX_TOKENS])
        keep = rng.random(len(seq)) >= WORD_DROPOUT
        seqs.append(seq[keep] if keep.any() else seq[:1])
    tokens = np.zeros((len(seqs), max(max(len(s) for s in seqs), 5)), dtype=np.int64)
    for row, seq in enumerate(seqs):
        tokens[row, : len(seq)] = seq
    labels = np.asarray(notes.labels[docs].toarray(), dtype=np.float32)
    return torch.from_numpy(tokens), torch.from_numpy(labels)


def baseline_rate(notes, docs: np.ndarray, batches: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    order = batch_order(docs, truncated_lengths(notes, docs, MAX_TOKENS), BATCH, rng, True)
    start = time.perf_counter()
    count = 0
    for batch in order[:batches]:
        per_document_collate(notes, batch, rng)
        count += len(batch)
    return count / (time.perf_counter() - start)


def project_rate(notes, docs: np.ndarray, batches: int, seed: int) -> tuple[float, list]:
    """Host notes/s (batch order included), and the batches for the device-half timing."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    count, kept = 0, []
    for number, host in enumerate(host_batches(notes, docs, BATCH, MAX_TOKENS, rng)):
        if number == batches:
            break
        count += len(host.index)
        kept.append(host)
    return count / (time.perf_counter() - start), kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notes", type=int, default=71_463)
    parser.add_argument("--batches", type=int, default=200, help="batches timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    notes = synthetic_notes(args.notes, seed=2)
    held_out = 5_000 if args.notes > 10_000 else 0  # the paper's 2,000 + 3,000 notes
    train = np.arange(args.notes - held_out)
    base, ours, device_rates = [], [], []
    for repeat in range(args.repeats):
        base.append(baseline_rate(notes, train, args.batches, repeat))
        rate, hosts = project_rate(notes, train, args.batches, repeat)
        ours.append(rate)
        start = time.perf_counter()
        seen = [materialize(h, WORD_DROPOUT, max(WIDTHS)).lengths.numpy() for h in hosts]
        device_rates.append(sum(len(h.index) for h in hosts) / (time.perf_counter() - start))
    lengths = np.concatenate(seen)
    forward = conv_forward_flops(lengths, E, FILTERS, WIDTHS) / len(lengths)
    backward = sparse_backward_flops(1, E, FILTERS, WIDTHS)
    needed = UTILISATION * H100_BF16_DENSE / (forward + backward)
    dense_needed = UTILISATION * H100_BF16_DENSE / (3 * forward)
    delivered = max(ours)
    print(
        f"corpus: {args.notes:,} synthetic notes, mean {np.diff(notes.offsets).mean():.0f} "
        f"tokens; {args.batches} batches of {BATCH} per repeat, best of {args.repeats}; "
        f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} (2 cores shared), "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    print(f"per-document Python collate (before issue 11): {max(base):,.0f} notes/s")
    print(f"icdtransfer host batches (flat documents + label entries): {delivered:,.0f} notes/s")
    print(
        f"device half (word dropout, padding, labels) run on this CPU instead: "
        f"{max(device_rates):,.0f} notes/s"
    )
    print(
        f"H100 consumption: {forward / 1e9:.2f} GFLOP forward convolution + "
        f"{backward / 1e9:.3f} GFLOP sparse backward per note ({lengths.mean():.0f} tokens "
        f"after truncation and word dropout), at {UTILISATION:.0%} of {H100_BF16_DENSE / 1e12:.0f} "
        f"TFLOP/s bf16 dense = {needed:,.0f} notes/s "
        f"(with a dense backward, 3x the forward: {dense_needed:,.0f})"
    )
    print(f"ratio: {delivered / needed:.2f}")


if __name__ == "__main__":
    main()
