"""`icdtransfer <command>`: one command per DVC stage. Parses arguments, calls the library.

Each command function passes the library exactly the params it reads (whole sections, or
single keys such as `params.target.out_dir`), never the whole Params: dvc.yaml lists the same
params for the command's stage, and tests/test_dvc_stages.py compares the two.

icdtransfer synthesize                      # data/raw/synthetic/ (MIMIC-III format)
icdtransfer prepare-source                  # data/prepared/source/ (PubMed + MeSH)
icdtransfer prepare-target --set target.min_count=50
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from icdtransfer import __version__
from icdtransfer.config import (
    BASELINE_METHODS,
    ConfigError,
    Params,
    SourceConfig,
    baseline_member_dir,
    dump_params,
    load_params,
)
from icdtransfer.data.errors import InputError
from icdtransfer.sweep import StudyBusy, SweepInterrupted

log = logging.getLogger("icdtransfer")

# OpenMP's waiting policy, set before any command imports torch (OpenMP reads it when torch
# loads it); a value the user set is kept, and Ray workers get what is in force (ray_env.py).
# PyTorch's CPU kernels run in OpenMP parallel regions, between which libgomp's threads spin by
# default. On shared cores (other processes, or this project's sweeps, which run more trial
# processes than cores: ray.num_cpus) a spinning thread burns the time slice its partner needs
# and every region waits for a descheduled thread: on a 2-core machine under a load of ~7,
# train_epoch at the paper's size ran 4.4 notes/s by default and 14.3 with PASSIVE (one thread:
# 14.3-15.2). A passive thread costs a wake-up of microseconds per region on free cores.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def openmp_defaults() -> dict[str, str]:
    """Set OPENMP_DEFAULTS where the environment leaves them unset; returns the values in force."""
    for name, value in OPENMP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in OPENMP_DEFAULTS}


def _synthesize(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.data.corpus import format_table1
    from icdtransfer.synth.synthesize import synthesize

    # Only where the abstracts come from and the holdout reserved for the synthesizer: the
    # rest of the source section (splits, vocabulary, out_dir) does not change the notes.
    source = SourceConfig(
        format=params.source.format,
        input=params.source.input,
        mesh_names=params.source.mesh_names,
        holdout=params.source.holdout,
        seed=params.source.seed,
        workers=params.source.workers,
    )
    stats = synthesize(params.synthesize, source)
    log.info("wrote %s\n%s", params.synthesize.out_dir, format_table1(stats, "synthetic EMRs"))


def _prepare_source(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.data.prepare import prepare_source

    prepare_source(params.source, params.tokenizer)
    log.info("wrote %s", params.source.out_dir)


def _prepare_target(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.data.prepare import prepare_target

    prepare_target(params.target, params.tokenizer, params.source.out_dir)
    log.info("wrote %s", params.target.out_dir)


def _pretrain(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.evaluate.metrics import describe
    from icdtransfer.train.stages import pretrain

    metrics = pretrain(params.encoder, params.pretrain, params.source.out_dir, params.ray)
    log.info(
        "wrote %s (stage 1: %s)",
        params.pretrain.out_dir,
        describe(metrics.tuned, "tuned"),
    )


def _train_target(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.train.stages import train_target

    train_target(
        params.encoder, params.head, params.train_target, params.target.out_dir, params.member
    )


def _baseline(params: Params, args: argparse.Namespace) -> None:
    from dataclasses import replace

    cfg = replace(params.baseline, method=args.method or params.baseline.method)
    if cfg.method == "lr":
        from icdtransfer.baseline.lr import train_baseline

        train_baseline(cfg, params.target.out_dir)
    else:
        from icdtransfer.baseline.l2r import train_l2r

        train_l2r(cfg, params.target, params.source.out_dir)
    log.info("wrote %s", cfg.member_dir())


def _baseline_args(cmd: argparse.ArgumentParser) -> None:
    methods = (
        "lr (tf-idf LR), lr_l2r (LR + kNN, LightGBM lambdarank) or lr_l2r_nerc (also "
        "dictionary NERC); default: baseline.method"
    )
    _option(cmd, "--method", "METHOD", methods, choices=BASELINE_METHODS)


def _ensemble(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.train.ensemble import build_ensemble

    metrics = build_ensemble([Path(m) for m in args.members], params.target.out_dir, args.out)
    log.info(
        "wrote %s: %d members, test micro-F %.4f, macro-F %.4f (threshold %s)",
        args.out,
        len(args.members),
        metrics.fixed.micro_f,
        metrics.fixed.macro_f,
        metrics.fixed.threshold,
    )


def _predict(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.predict import predict, write_predictions

    rows = predict(Path(args.model), Path(args.input), args.top_k, args.threshold)
    write_predictions(rows, Path(args.output) if args.output else None)


def _score(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.evaluate.predictions import score_file

    sys.stdout.write(json.dumps(score_file(args.predictions, args.protocol), indent=2) + "\n")


def _sweep(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.sweep.runner import StudyRequest, run_study

    request = StudyRequest(
        args.study,
        params.sweep,
        params.encoder,
        params.head,
        params.train_target,
        params.target.out_dir,
        params.ray,
    )
    if args.status:
        from icdtransfer.sweep.status import study_status

        print(study_status(request))
        return
    from icdtransfer.sweep.plan import study_plan

    # measured epochs: the study store's members and train-target's (dvc repro trains one first)
    plan = study_plan(request, (params.member.out_dir,))
    print(plan, flush=True)  # also before a run: what it will train, and about how long
    if not getattr(args, "plan", False):
        run_study(request, retry_errored=args.retry_errored)


def _report(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.report.render import run_report

    out_dir = params.baseline.out_dir
    baselines = {m: baseline_member_dir(out_dir, m) for m in BASELINE_METHODS}
    run_report(
        params.report,
        params.target.out_dir,
        params.sweep.results_dir,
        baselines,
        params.train_target.pretrained,
    )


def _dashboard(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.report.serve import dashboard_server

    page = Path(params.report.out_dir) / "dashboard.html"
    if not page.exists():
        raise InputError(page, None, "not found: run `icdtransfer report` (or dvc repro) first")
    if not args.serve:
        print(page.resolve())
        return
    # 127.0.0.1 only, the one file only: a report of patient-derived results is not for the
    # network (report/serve.py)
    with dashboard_server(page, args.port) as server:
        log.info("serving http://127.0.0.1:%d/ (Ctrl-C to stop)", server.server_address[1])
        server.serve_forever()


def _params(params: Params, args: argparse.Namespace) -> None:
    text = dump_params(params)
    if args.write is None:
        sys.stdout.write(text)
        return
    from icdtransfer.data.atomic import atomic_file

    with atomic_file(args.write) as handle:
        handle.write(text)
    log.info("wrote %s", args.write)


def _option(cmd: argparse.ArgumentParser, flag: str, metavar: str, help_text: str, **kw) -> None:
    cmd.add_argument(flag, metavar=metavar, help=help_text, **kw)


def _sweep_args(cmd: argparse.ArgumentParser) -> None:
    _option(cmd, "--study", "NAME", "a study in sweep.studies_dir or a .yaml path", required=True)
    cmd.add_argument(
        "--retry-errored",
        action="store_true",
        help="resuming: run failed trials again, from their last checkpoint (default: a "
        "failed trial stays failed)",
    )
    cmd.add_argument(
        "--status",
        action="store_true",
        help="print the study's state (trials, members, lock, where it lives, whether the "
        "next run resumes) and exit, running nothing",
    )
    cmd.add_argument(
        "--plan",
        action="store_true",
        help="print how many members the study will train and how many it reuses from the "
        "member store, per variant, with the wall time estimated from the epoch times of "
        "members in sweep.results_dir and member.out_dir measured on this device, and exit, "
        "running nothing (a run prints the same first)",
    )


def _dashboard_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--serve", action="store_true", help="serve it on http://127.0.0.1:PORT")
    cmd.add_argument("--port", type=int, default=8765)


def _params_args(cmd: argparse.ArgumentParser) -> None:
    _option(cmd, "--write", "FILE", "write the params file here (default: stdout)")


def _ensemble_args(cmd: argparse.ArgumentParser) -> None:
    members = "member directories (same target corpus, different seeds)"
    _option(cmd, "--members", "DIR", members, nargs="+", required=True)
    _option(cmd, "--out", "DIR", "ensemble directory to write", required=True)


def _predict_args(cmd: argparse.ArgumentParser) -> None:
    model = "a member directory (CNN or baseline) or an ensemble directory"
    _option(cmd, "--model", "DIR", model, required=True)
    _option(cmd, "--input", "FILE", 'JSONL, one {"id": ..., "text": ...} per line', required=True)
    _option(cmd, "--output", "FILE", "write JSONL here (default: stdout)")
    cmd.add_argument("--top-k", type=int, default=10, help="codes listed per note (default 10)")
    threshold = "probability for `predicted` (default: the model's tuned threshold)"
    _option(cmd, "--threshold", "P", threshold, type=float, default=None)


def _score_args(cmd: argparse.ArgumentParser) -> None:
    _option(
        cmd, "--predictions", "FILE", "a member's or ensemble's predictions.parquet", required=True
    )
    how = "metrics (metrics.json) | paper | caml | edin | all | THRESHOLD,MACRO,LABELS"
    _option(cmd, "--protocol", "NAME", f"{how} (default: metrics)", default="metrics")


COMMANDS: dict[str, tuple[Callable[[Params, argparse.Namespace], None], str]] = {
    "synthesize": (
        _synthesize,
        "write a synthetic MIMIC-III formatted EMR corpus (params: synthesize, source)",
    ),
    "prepare-source": (
        _prepare_source,
        "PubMed/MEDLINE (or BioASQ) abstracts -> stage-1 corpus (params: source, tokenizer)",
    ),
    "prepare-target": (
        _prepare_target,
        "MIMIC-III CSVs or JSONL EMRs -> stage-2 corpus (params: target, tokenizer)",
    ),
    "pretrain": (
        _pretrain,
        "stage 1: CNN on PubMed abstracts -> MeSH (params: encoder, pretrain, ray)",
    ),
    "train-target": (
        _train_target,
        "stage 2: one transfer variant, one seed -> a member directory (params: encoder, head, "
        "train_target, member)",
    ),
    "baseline": (
        _baseline,
        "the paper's Table 3 baselines: LR, LR + L2R, LR + L2R + NERC -> a member directory "
        "(params: baseline)",
    ),
    "sweep": (
        _sweep,
        "run (or resume) a study of studies/ on Ray Tune + Optuna -> results/<study>/ "
        "(params: encoder, head, train_target, ray, sweep)",
    ),
    "report": (
        _report,
        "Tables 2 and 3, decile and frequency data with bootstrap intervals, summary.json and "
        "reports/dashboard.html (params: report)",
    ),
    "dashboard": (_dashboard, "print the dashboard's path, or --serve it on 127.0.0.1"),
    "ensemble": (_ensemble, "average stored member probabilities (a seed ensemble)"),
    "predict": (_predict, "top codes for new notes (JSONL) from a member or ensemble directory"),
    "params": (_params, "print the params every stage would read (a preset merged, --set applied)"),
    "score": (_score, "re-score a prediction file under a protocol (evaluate/protocols.py)"),
}
EXTRA_ARGS = {
    "baseline": _baseline_args,
    "params": _params_args,
    "ensemble": _ensemble_args,
    "predict": _predict_args,
    "sweep": _sweep_args,
    "dashboard": _dashboard_args,
    "score": _score_args,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icdtransfer",
        description="Neural transfer learning for ICD coding (Rios & Kavuluru 2018): "
        "every DVC stage of the study is one command.",
    )
    parser.add_argument("--version", action="version", version=f"icdtransfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument(
            "--params",
            default="params.yaml",
            metavar="FILE",
            help="params file (default: %(default)s)",
        )
        cmd.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            dest="overrides",
            help="override one param (value parsed as YAML); repeatable",
        )
        cmd.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        if name in EXTRA_ARGS:
            EXTRA_ARGS[name](cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    openmp_defaults()  # before any command imports torch
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        params = load_params(args.params, args.overrides)
        COMMANDS[args.command][0](params, args)
    except KeyboardInterrupt:
        print(f"icdtransfer {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, InputError) as err:
        # Expected bad input: one line naming the file, the record and the problem, never
        # document text. Anything else is a bug and keeps its traceback.
        print(f"icdtransfer {args.command}: error: {err}", file=sys.stderr)
        return 2
    except SweepInterrupted as err:
        print(f"icdtransfer {args.command}: {err}", file=sys.stderr)
        return 130
    except StudyBusy as err:
        print(f"icdtransfer {args.command}: error: {err}", file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again once the other run has ended
    return 0
