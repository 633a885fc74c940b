"""Label attention's memory at MIMIC's label count: one forward and backward of the attention
(model/attention.py `attend`) with every code at once against the default chunks of codes,
each checkpointed, each in a process of its own so that each peak is its own.

    .venv/bin/python bench/attention_memory.py [--batch 16] [--positions 2000] [--dim 64]
                                               [--codes 8929] [--threads 1]

Defaults: batch 16, 2,000 positions, adaptation 64, 8,929 codes (MIMIC-III full's), fp32 on
the CPU. Prints each run's peak resident memory (ru_maxrss) and seconds, and last the ratio
of the peaks (all at once / chunked): how much memory the chunks save.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

PLATFORM = Path(__file__).resolve().parents[1] / "platform"


def one_run(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(PLATFORM))
    import torch

    from icdtransfer.model.attention import ATTENTION_BYTES, attend

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h = torch.randn(args.batch, args.positions, args.dim, requires_grad=True)
    valid = torch.ones(args.batch, args.positions, dtype=torch.bool)
    u = torch.randn(args.codes, args.dim, requires_grad=True)
    w = torch.randn(args.codes, args.dim, requires_grad=True)
    b = torch.zeros(args.codes, requires_grad=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    attend(h, valid, u, w, b, chunk=args.codes if args.whole else None).sum().backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_mib": peak / 1024, "inputs_mib": before / 1024,
            "bound_mib": ATTENTION_BYTES / 2**20}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--positions", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--codes", type=int, default=8929)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args)))
        return
    tensor = args.batch * args.positions * args.codes * 4 / 2**20
    print(
        f"batch {args.batch}, {args.positions} positions, A={args.dim}, {args.codes} codes, fp32,"
        f" {args.threads} thread(s): one [B, P, L] tensor {tensor:.0f} MiB"
    )
    peaks = {}
    for name, extra in (("all codes at once (baseline)", ["--whole"]), ("chunked", [])):
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--child", *extra],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        peaks[name] = result["peak_mib"]
        bound = f"; codes in chunks of at most {result['bound_mib']:.0f} MiB" if not extra else ""
        print(
            f"{name}: peak {result['peak_mib']:.0f} MiB (inputs {result['inputs_mib']:.0f} MiB),"
            f" {result['seconds']:.1f} s{bound}"
        )
    print(f"ratio: {peaks['all codes at once (baseline)'] / peaks['chunked']:.2f}")


if __name__ == "__main__":
    main()
