"""Does the paper preset's optimiser train? Its AdaDelta against Adam, same model, same epochs.

    .venv/bin/python bench/paper_optimizer.py [--target data/prepared/target] [--epochs 12]
        [--embedding 64] [--max-tokens 1000] [--eps 1e-6] [--adam-batch 50]

Trains the CNN without transfer (`scratch`) on a prepared target corpus (default: the one
`make repro` prepares) twice from the same initial weights, with the default model shape
(E=64, 64 filters, adaptation 256, dropout 0.1, word dropout 0.3):

* baseline: Adam at params.yaml's learning rate (`--adam-batch`, default the preset's 50);
* project: presets/paper.yaml's optimiser settings (AdaDelta, its learning rate and batch
  size; rho and epsilon from icdtransfer.train.loop, `--eps` overrides epsilon).

Prints the best validation macro-F of each (the early-stopping criterion); the last line is
`ratio: <preset / Adam>` (goal: at least 0.8).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from icdtransfer.config import load_params
from icdtransfer.data.corpus import Corpus
from icdtransfer.model.cnn import EncoderShape, TargetModel
from icdtransfer.train import loop

REPO = Path(__file__).resolve().parents[1]


def best_macro_f(
    corpus: Corpus, args: argparse.Namespace, optimizer: str, lr: float, batch: int
) -> float:
    torch.manual_seed(1)
    model = TargetModel(
        EncoderShape(len(corpus.vocab), args.embedding, args.embedding, (3, 4, 5)),
        len(corpus.label_table),
        adaptation_size=256,
        dropout=0.1,
    )
    settings = loop.LoopSettings(
        optimizer=optimizer,
        learning_rate=lr,
        batch_size=batch,
        epochs=args.epochs,
        patience=args.epochs,
        seed=1,
        precision="fp32",
        device="cpu",
        bucket=True,
        max_tokens=args.max_tokens,
        word_dropout=0.3,
        min_length=5,
    )
    start = time.perf_counter()
    history = loop.fit(model, corpus, settings).state.history
    curve = ", ".join(f"{h.val_macro_f:.3f}" for h in history)
    print(f"  {optimizer} lr {lr} batch {batch}: {time.perf_counter() - start:.0f} s; {curve}")
    return max(h.val_macro_f for h in history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=str(REPO / "data/prepared/target"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=loop.ADADELTA_EPS)
    parser.add_argument("--adam-batch", type=int, default=None)
    args = parser.parse_args()
    for path in (args.target,):
        if not Path(path).exists():
            raise SystemExit(f"{path} does not exist: run `make repro` first (or pass its path)")
    loop.ADADELTA_EPS = args.eps
    defaults = load_params(REPO / "params.yaml").train_target
    paper = load_params(REPO / "presets" / "paper.yaml").train_target
    corpus = Corpus.open(args.target)
    print(
        f"scratch on {args.target} ({len(corpus.split('train'))} training notes, "
        f"{len(corpus.label_table)} codes), {args.epochs} epochs; best validation macro-F per "
        f"epoch; AdaDelta rho {loop.ADADELTA_RHO}, eps {loop.ADADELTA_EPS}"
    )
    adam = best_macro_f(
        corpus, args, "adam", defaults.learning_rate, args.adam_batch or paper.batch_size
    )
    preset = best_macro_f(corpus, args, paper.optimizer, paper.learning_rate, paper.batch_size)
    print(f"baseline (Adam): best validation macro-F {adam:.4f}")
    print(f"project (presets/paper.yaml's {paper.optimizer}): {preset:.4f}")
    print(f"ratio: {preset / adam:.2f}")


if __name__ == "__main__":
    main()
