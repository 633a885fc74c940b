"""EM[x] and the words stage 1 never saw: frozen N(0, 1) rows (before) vs stage 1's <unk> (now).

    .venv/bin/python bench/em_new_words.py [--pretrained models/pretrain]
        [--target data/prepared/target] [--variants frozen tune_conv] [--seed 1]

Trains each fixed-embedding variant (`frozen` = EM[x] CV[x], `tune_conv` = EM[x] CV[v]) twice
with params.yaml's encoder, head and train_target sections and studies/table2.yaml's overrides
(8 epochs, 1,000 tokens), one seed, from the stage-1 model `make repro` trains:

* baseline: the previous treatment, rows of EMR words outside the stage-1 vocabulary left at
  their random N(0, 1) initialisation and frozen (icdtransfer.model.transfer's
  `read_new_words_as_unknown` switched off for this run);
* project: those rows set to the stage-1 `<unk>` vector (the library as it is).

Prints test micro-F and both macro-Fs at the tuned threshold; the last line is
`ratio: <project / baseline>` of macro_f_all_labels, averaged over the variants.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from icdtransfer.artifacts import Scores
from icdtransfer.config import MemberConfig, load_params
from icdtransfer.model import transfer
from icdtransfer.train.stages import train_target

REPO = Path(__file__).resolve().parents[1]


def run(args: argparse.Namespace, variant: str, unknown_rows: bool, scratch: Path) -> Scores:
    params = load_params(REPO / "params.yaml")
    head = replace(params.head, max_tokens=1000)  # studies/table2.yaml's train overrides
    cfg = replace(params.train_target, epochs=8, pretrained=args.pretrained)
    member = MemberConfig(
        variant=variant, seed=args.seed, checkpoint_dir=str(scratch / f"ckpt-{unknown_rows}")
    )
    original = transfer.read_new_words_as_unknown
    if not unknown_rows:
        transfer.read_new_words_as_unknown = lambda *a, **k: 0
    try:
        out = scratch / f"{variant}-{unknown_rows}"
        metrics = train_target(params.encoder, head, cfg, args.target, member, out_dir=str(out))
    finally:
        transfer.read_new_words_as_unknown = original
    return metrics.tuned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default=str(REPO / "models/pretrain"))
    parser.add_argument("--target", default=str(REPO / "data/prepared/target"))
    parser.add_argument("--variants", nargs="+", default=["frozen", "tune_conv"])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for path in (args.pretrained, args.target):
        if not Path(path).exists():
            raise SystemExit(f"{path} does not exist: run `make repro` first (or pass its path)")
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench-em-") as folder:
        for variant in args.variants:
            scores = {}
            for label, unknown_rows in (("N(0,1) rows (baseline)", False), ("<unk> rows", True)):
                s = run(args, variant, unknown_rows, Path(folder))
                scores[unknown_rows] = s
                print(
                    f"{variant}, seed {args.seed}, {label}: micro_f {100 * s.micro_f:.1f}, "
                    f"macro_f_all_labels {100 * s.macro_f_all_labels:.1f}, "
                    f"macro_f {100 * s.macro_f:.1f}"
                )
            ratios.append(scores[True].macro_f_all_labels / scores[False].macro_f_all_labels)
    print(f"ratio: {sum(ratios) / len(ratios):.2f}")


if __name__ == "__main__":
    main()
