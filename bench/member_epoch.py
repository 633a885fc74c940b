"""One stage-2 member's epoch at the default dimensions: training and validation seconds.

    .venv/bin/python bench/member_epoch.py [--epochs 3] [--precision auto] [--threads 1]
                                           [--frozen-embeddings] [--corpus DIR [--whole-table]]
                                           [--variant tune_all|frozen|tune_all_frozen_copy]

Default dimensions (params.yaml): 750 training and 200 validation notes (synthetic, ~1,268
words, so nearly all cut at 700 tokens), vocabulary 27,026, 71 codes, E=64, 64 filters of
widths 3/4/5, adaptation 256, batch 16, word dropout 0.3, Adam. Runs the project's
train_epoch and predict; the best of `--epochs` epochs counts. Run it with PYTHONPATH set to
another checkout's platform/ to time that code on the same notes (the README's speed-ups are
this file run on two checkouts, alternately). Prints the precision and kernel chosen and why.

`--corpus data/prepared/target`: a prepared corpus instead (its training and validation splits,
vocabulary and codes; 400 tokens, params.yaml's `head.max_tokens`), and the embedding trained
as `fit` trains it, on the rows its training documents use (model/compact.py); with
`--whole-table`, on every row, as before that change. The synthetic notes draw words uniformly
from the whole vocabulary, so every row is used there and both are the same.

`--variant frozen` (the encoder fixed) or `tune_all_frozen_copy` (a fixed copy beside the
trained encoder): validation is timed twice each epoch, without and with the fixed encoder's
remembered features (model/cnn.py `TargetModel._encode`), alternately, and the ratio printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _synthetic import synthetic_notes  # noqa: E402
from icdtransfer.data.corpus import Corpus  # noqa: E402
from icdtransfer.model import cnn  # noqa: E402
from icdtransfer.model.cnn import TargetModel  # noqa: E402
from icdtransfer.model.compact import compact_embeddings  # noqa: E402
from icdtransfer.model_meta import EncoderShape  # noqa: E402
from icdtransfer.train import precision as precision_module  # noqa: E402
from icdtransfer.train.loop import (  # noqa: E402
    LoopSettings,
    make_optimizer,
    predict,
    train_epoch,
    used_rows,
)

TRAIN, VAL, VOCAB, CODES = 750, 200, 27_026, 71


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frozen-embeddings", action="store_true", help="EM not trained")
    parser.add_argument("--corpus", help="a prepared target corpus (data/prepared/target)")
    parser.add_argument("--whole-table", action="store_true", help="train every embedding row")
    parser.add_argument(
        "--variant", default="tune_all", choices=["tune_all", "frozen", "tune_all_frozen_copy"]
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.corpus:
        notes = Corpus.open(args.corpus)
        train, val = notes.split("train"), notes.split("validation")
        vocab, codes, max_tokens = len(notes.vocab), notes.labels.shape[1], 400
    else:
        notes = synthetic_notes(TRAIN + VAL, 0, 1_268, CODES, 4.7, VOCAB)
        train, val = np.arange(TRAIN), np.arange(TRAIN, TRAIN + VAL)
        vocab, codes, max_tokens = VOCAB, CODES, 700
    shape = EncoderShape(vocab, 64, 64, (3, 4, 5))
    torch.manual_seed(0)
    copy = args.variant == "tune_all_frozen_copy"
    model = TargetModel(shape, codes, 256, 0.1, frozen_copy=copy)
    fixed = {
        "tune_all": None,
        "frozen": model.encoder,
        "tune_all_frozen_copy": model.frozen_encoder,
    }[args.variant]
    if fixed is not None:
        fixed.requires_grad_(False)
    if args.frozen_embeddings:
        model.encoder.embedding.weight.requires_grad_(False)
    rows = "whole table (--whole-table)"
    if not args.whole_table:
        used = compact_embeddings(model, used_rows(notes, train, max_tokens)).rows_used
        rows = f"{used[0]:,} of {used[1]:,} rows trained" if used else "every row used"
    cpu = torch.device("cpu")
    bf16 = precision_module.use_bf16(args.precision, cpu, model)
    choice = precision_module.choose(args.precision, cpu, shape)
    kernel = getattr(choice, "kernel", "conv (this checkout has one kernel)")
    settings = LoopSettings(
        "adam", 3e-3, 16, 60, 3, 1, args.precision, "cpu", True, max_tokens, 0.3, 5
    )
    optimizer = make_optimizer(model, "adam", 3e-3)
    train_times, val_times, uncached = [], [], []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        train_epoch(model, notes, train, optimizer, settings, epoch, cpu, bf16)
        train_times.append(time.perf_counter() - start)
        for cache, times in ((False, uncached), (True, val_times)):
            if fixed is None and not cache:
                continue
            cnn.FIXED_FEATURE_CACHE = cache
            start = time.perf_counter()
            predict(model, notes, val, 16, max_tokens, 5, cpu, bf16)
            times.append(time.perf_counter() - start)
    print(
        f"code {Path(precision_module.__file__).parents[2]}; {args.threads} thread(s); "
        f"ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', 'unset')} "
        f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"precision {args.precision}: {choice.name} ({choice.reason}); kernel {kernel}")
    print(
        f"{len(train)} training, {len(val)} validation notes, {max_tokens} tokens;"
        f" embedding: {rows}; variant {args.variant}"
    )
    if uncached:
        print(
            f"validation with the fixed encoder's features remembered: {min(val_times):.3f} s,"
            f" computed every epoch: {min(uncached):.3f} s, ratio"
            f" {min(uncached) / min(val_times):.2f} (best of {args.epochs}; the first epoch"
            " fills the cache)"
        )
    print(
        f"epoch (best of {args.epochs}): train {min(train_times):.2f} s, "
        f"validation {min(val_times):.2f} s, total {min(train_times) + min(val_times):.2f} s"
    )


if __name__ == "__main__":
    main()
