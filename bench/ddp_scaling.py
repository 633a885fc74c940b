"""Stage-1 data parallelism on the CPU: N gloo ranks, each with its own batch, against one
process, same cores in total.

    .venv/bin/python bench/ddp_scaling.py [--docs 1600] [--batch 16] [--workers 2] [--cores 2]

The ranks run the project's loop (icdtransfer.train.loop.train_epoch, the same function Ray
Train's workers run: train/distributed.py) on a DDP-wrapped stage-1 model at the default
dimensions (E=64, 64 filters of widths 3/4/5, synthetic abstracts of ~147 words, 2,000 MeSH
labels, 400-token cut), without Ray: torch.distributed with gloo over localhost, so that
Ray's start-up is not timed. One process gets `--cores` torch threads; each of the N ranks
gets cores / N (and, for comparison, one process gets cores / N too). Each run trains one
epoch after a warm-up epoch on the same notes; prints documents/s of each and
`speedup: <N ranks / one process with all the cores>`.
"""

from __future__ import annotations

import argparse
import os
import socket
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from _synthetic import synthetic_notes
from icdtransfer.model.cnn import SourceModel
from icdtransfer.model_meta import EncoderShape
from icdtransfer.train.loop import LoopSettings, make_optimizer, train_epoch

SHAPE = EncoderShape(30_000, 64, 64, (3, 4, 5))
LABELS = 2_000


def settings(batch: int) -> LoopSettings:
    return LoopSettings("adam", 3e-3, batch, 2, 1, 1, "fp32", "cpu", True, 400, 0.0, 5)


def rank_main(rank: int, world: int, port: int, docs: int, batch: int, threads: int, out) -> None:  # noqa: ANN001
    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
    notes = synthetic_notes(docs, 5, 147, LABELS, 12.6, SHAPE.vocab_size)
    torch.manual_seed(0)
    model = SourceModel(SHAPE, LABELS, 0.1)
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = make_optimizer(wrapped, "adam", 3e-3)
    ids = np.arange(docs)
    train_epoch(
        wrapped, notes, ids, optimizer, settings(batch), 0, torch.device("cpu"), False, rank, world
    )
    if world > 1:
        dist.barrier()
    start = time.perf_counter()
    train_epoch(
        wrapped, notes, ids, optimizer, settings(batch), 1, torch.device("cpu"), False, rank, world
    )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        out.put(docs / (time.perf_counter() - start))


def measure(world: int, docs: int, batch: int, threads: int) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=rank_main, args=(r, world, port, docs, batch, threads, out))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    rate = out.get(timeout=600)
    for p in procs:
        p.join()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1_600)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    single = measure(1, args.docs, args.batch, args.cores)
    per_rank = max(args.cores // args.workers, 1)
    ddp = measure(args.workers, args.docs, args.batch, per_rank)
    narrow = measure(1, args.docs, args.batch, per_rank) if per_rank != args.cores else single
    print(
        f"stage-1 default dimensions, {args.docs} abstracts, batch {args.batch} per rank, "
        f"fp32, load average {load:.1f} -> {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)"
    )
    print(f"1 process x {args.cores} threads: {single:.0f} documents/s")
    print(
        f"{args.workers} gloo ranks x {per_rank} threads (global batch "
        f"{args.workers * args.batch}): {ddp:.0f} documents/s"
    )
    print(f"1 process x {per_rank} threads: {narrow:.0f} documents/s")
    print(f"speedup: {ddp / single:.2f}")


if __name__ == "__main__":
    main()
