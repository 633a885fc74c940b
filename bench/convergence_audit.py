"""Sizing the stopping rule: train members far past any plausible stop, then replay candidate
stopping rules on their recorded validation curves (docs/DESIGN.md section 4).

Training is a function of (seed, epoch) alone (train/loop.py), so continuing a stopped member
with patience 10 from where it stopped, with the same seed, optimiser state and data order,
follows exactly the curve an uninterrupted long run records. One long run per member
therefore audits every rule at once: the rule stops at epoch t, the audit continues to the
first run of 10 epochs without a better validation macro-F after t, and the gain is the
best macro-F then minus the best at t.

    .venv/bin/python bench/convergence_audit.py train --variants scratch,tune_all --seeds 1,2
    .venv/bin/python bench/convergence_audit.py replay      # the rules' table, from the runs

`train` runs `icdtransfer train-target` per member with a long patience (default 15, cap
100) into --out (default .audit/), resumable: a member with a history.json is not retrained.
`replay` prints, per rule, the largest continuation gain, how many members gain more than
0.01, and the mean epochs the rule trains (what the rule costs).

The audit of a finished study, under the rule it ran with (params.yaml's train_target):

    .venv/bin/python bench/convergence_audit.py --out .audit_default study results/table2

takes, per variant, the study's member that stopped earliest, trains it again with the same
seed and settings plus `train_target.audit_patience=10` (the same run up to the rule's stop,
then on until 10 epochs bring no better criterion), checks that the rule stops where the
study's member stopped, and prints and writes (<out>/audit.json) each gain; exit 1 if any
exceeds 0.01.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from icdtransfer.train.audit import (  # noqa: E402
    RULES,
    continuation_gain,
    criterion_rules,
    schedule_rules,
)


def train(args: argparse.Namespace) -> None:
    out = Path(args.out)
    for variant in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = out / f"{variant}-seed{seed}"
            if (folder / "history.json").exists():
                print(f"{folder}: done already", flush=True)
                continue
            command = [
                str(Path(sys.executable).with_name("icdtransfer")),
                "train-target",
                *("--set", f"member.variant={variant}"),
                *("--set", f"member.seed={seed}"),
                *("--set", f"member.out_dir={out}"),
                *("--set", f"member.checkpoint_dir={out}/.checkpoints"),
                *("--set", f"train_target.epochs={args.cap}"),
                *("--set", f"train_target.patience={args.patience}"),
                *("--set", "train_target.min_epochs=1"),
                *(a for s in args.set for a in ("--set", s)),
            ]
            print(" ".join(command[1:]), flush=True)
            subprocess.run(command, check=True)


def curves(out: Path) -> dict[str, list[dict]]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/history.json"))}


def replay(args: argparse.Namespace) -> None:
    runs = curves(Path(args.out))
    if not runs:
        sys.exit(f"no runs under {args.out}: run `train` first")
    if args.noise:
        for member, history in runs.items():
            for key in ("val_macro_f", "val_macro_f_best", "val_macro_f_band", "val_micro_f"):
                if key not in history[0]:
                    continue
                values = [float(r[key]) for r in history[20:]]
                steps = [b - a for a, b in zip(values, values[1:], strict=False)]
                spread = (sum(s * s for s in steps) / max(len(steps), 1)) ** 0.5
                print(f"{member:32s} {key:18s} epoch-to-epoch RMS change {spread:.4f}")
        return
    settings = {
        json.loads((Path(args.out) / m / "member.json").read_text())["settings"].get(
            "lr_reductions", 0
        )
        for m in runs
    }
    rules = RULES if args.criterion == "val_macro_f" else criterion_rules(args.criterion)
    if args.floor_from:  # the loop's rule: no stop before the criterion beats the floor
        rules = floored_rules(args.criterion, learning_floor(args.floor_from, args.criterion))
    # recorded with learning-rate reductions: replay that schedule, on the recorded criterion
    if settings != {0}:
        info = json.loads((Path(args.out) / next(iter(runs)) / "member.json").read_text())
        s = info["settings"]
        floor = learning_floor(args.floor_from, s["criterion"]) if args.floor_from else -1.0
        rules = schedule_rules(
            s["lr_patience"], s["lr_reductions"], s["criterion"], s["smoothing"], floor
        )
    print(f"{len(runs)} members: " + ", ".join(runs))
    print(f"{'rule':56s} {'max gain':>8s} {'> 0.01':>6s} {'epochs':>6s}  worst member")
    for name, rule in rules.items():
        gains, epochs = [], []
        for member, history in runs.items():
            stop = rule(history)
            gains.append((continuation_gain(history, stop, key=args.audit), member, stop))
            epochs.append(stop)
        worst = max(gains)
        over = sum(g > 0.01 for g, _, _ in gains)
        print(
            f"{name:56s} {worst[0]:8.4f} {over:6d} {sum(epochs) / len(epochs):6.1f}"
            f"  {worst[1]} (stop {worst[2]})"
        )


def learning_floor(corpus_dir: str, criterion: str) -> float:
    """The loop's floor (train/loop.py fit): predicting every code's criterion on the
    corpus' validation split, plus LEARNING_MARGIN; -1 where the criterion has none."""
    from icdtransfer.data.corpus import Corpus
    from icdtransfer.evaluate.metrics import dense
    from icdtransfer.train.loop import LEARNING_MARGIN
    from icdtransfer.train.validation import trivial_macro_f

    corpus = Corpus.open(corpus_dir)
    trivial = trivial_macro_f(dense(corpus.labels[corpus.split("validation")]), criterion)
    return -1.0 if trivial is None else trivial + LEARNING_MARGIN


def floored_rules(key: str, floor: float) -> dict:
    """Smoothed patience rules (with and without min_delta) as the loop applies them: each
    history is fed, epoch by epoch, through the loop's own LoopState, whose `stopped` fires
    only once the watched criterion has beaten `floor` or the validation loss has not
    improved for LOSS_GATE x patience epochs (train/state.py)."""
    from icdtransfer.train.state import EpochRecord, LoopState

    def stop(patience: int, delta: float, history: list[dict]) -> int:
        state = LoopState(floor=floor)
        for row in history:
            state.record(EpochRecord(**row), min_delta=delta, criterion=key, smoothing=3)
            if state.stopped(patience, min_epochs=5):
                return state.epoch
        return state.epoch

    rules = {}
    for patience in (5, 6, 8, 10, 12, 14, 16):
        for delta in (0.0, 0.001, 0.002, 0.003):
            name = f"{key} > floor {floor:.3f}: patience {patience}, 3-epoch mean"
            rules[name + (f", min_delta {delta:g}" if delta else "")] = (
                lambda history, patience=patience, delta=delta: stop(patience, delta, history)
            )
    return rules


def study(args: argparse.Namespace) -> int:
    import pandas as pd

    members = pd.read_parquet(Path(args.results) / "members.parquet")
    out, rows = Path(args.out), []
    for variant, part in members.groupby("variant", sort=False):
        first = part.sort_values(["epochs_run", "seed"]).iloc[0]
        folder = out / f"{variant}-seed{int(first.seed)}"
        if not (folder / "member.json").exists():
            subprocess.run(
                [
                    str(Path(sys.executable).with_name("icdtransfer")),
                    "train-target",
                    *("--set", f"member.variant={variant}"),
                    *("--set", f"member.seed={int(first.seed)}"),
                    *("--set", f"member.out_dir={out}"),
                    *("--set", f"member.checkpoint_dir={out}/.checkpoints"),
                    *("--set", f"head.adaptation_size={int(first.adaptation_size)}"),
                    *("--set", f"head.word_dropout={float(first.word_dropout)}"),
                    *("--set", f"train_target.audit_patience={args.patience}"),
                ],
                check=True,
            )
        info = json.loads((folder / "member.json").read_text())
        rows.append(
            {
                "variant": variant,
                "seed": int(first.seed),
                "study_epochs_run": int(first.epochs_run),
                "rule_stop_epoch": info["audit_stop_epoch"],
                "epochs_run": info["epochs_run"],
                "criterion": info["criterion"],
                "gain": info["audit_gain"],
            }
        )
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False))
    same = (frame["study_epochs_run"] == frame["rule_stop_epoch"]).all()
    worst = float(frame["gain"].max())
    (out / "audit.json").write_text(
        json.dumps({"members": rows, "same_stop": bool(same), "max_gain": worst}, indent=2)
    )
    print(f"rule stops where the study's members stopped: {same}; largest gain {worst:.4f}")
    return 0 if same and worst <= 0.01 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".audit")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train members with a long patience")
    t.add_argument("--variants", default="scratch,frozen,tune_conv,tune_all,tune_all_frozen_copy")
    t.add_argument("--seeds", default="1,2")
    t.add_argument("--cap", type=int, default=100)
    t.add_argument("--patience", type=int, default=15)
    t.add_argument("--set", action="append", default=[], help="more --set for train-target")
    r = sub.add_parser("replay", help="replay the candidate rules on the recorded curves")
    r.add_argument("--criterion", default="val_macro_f", help="the curve the rules watch")
    r.add_argument("--audit", default="val_macro_f", help="the curve the audit measures")
    r.add_argument("--noise", action="store_true", help="epoch-to-epoch spread per curve")
    r.add_argument(
        "--floor-from",
        metavar="CORPUS",
        help="replay as the loop stops: not before the criterion beats the floor of predicting"
        " every code on this corpus' validation split (e.g. data/prepared/target)",
    )
    a = sub.add_parser("study", help="audit a finished study's earliest-stopping members")
    a.add_argument("results", help="the study's results folder (members.parquet)")
    a.add_argument("--patience", type=int, default=10)
    args = parser.parse_args()
    if args.command == "study":
        sys.exit(study(args))
    train(args) if args.command == "train" else replay(args)


if __name__ == "__main__":
    main()
