"""`icdtransfer <command>`: one command per DVC stage. Parses arguments, calls the library.

icdtransfer synthesize                      # data/raw/synthetic/ (MIMIC-III format)
icdtransfer prepare-source                  # data/prepared/source/ (PubMed + MeSH)
icdtransfer prepare-target --set target.min_count=50
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from icdtransfer import __version__
from icdtransfer.config import ConfigError, Params, load_params
from icdtransfer.data.errors import InputError

log = logging.getLogger("icdtransfer")


def _synthesize(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.data.corpus import format_table1
    from icdtransfer.data.synthesize import synthesize

    stats = synthesize(params.synthesize, params.source)
    log.info("wrote %s\n%s", params.synthesize.out_dir, format_table1(stats, "synthetic EMRs"))


def _prepare_source(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.data.prepare import prepare_source

    prepare_source(params.source, params.tokenizer)
    log.info("wrote %s", params.source.out_dir)


def _prepare_target(params: Params, args: argparse.Namespace) -> None:
    from icdtransfer.data.prepare import prepare_target

    prepare_target(params.target, params.tokenizer, params.source.out_dir)
    log.info("wrote %s", params.target.out_dir)


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        params = load_params(args.params, args.overrides)
        COMMANDS[args.command][0](params, args)
    except (ConfigError, InputError) as err:
        # Messages name the file, the record and the problem, never document text.
        print(f"icdtransfer {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
