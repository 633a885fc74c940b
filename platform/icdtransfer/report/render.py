"""The report stage: tables (CSV and Markdown), deciles, summary.json, the ablation's numbers
(ablation.csv, ablation_deciles.csv) and the dashboard."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import pandas as pd

from icdtransfer.artifacts import THRESHOLD_KINDS, THRESHOLD_TEXT
from icdtransfer.config import ReportConfig
from icdtransfer.data.atomic import atomic_dir
from icdtransfer.data.corpus import Corpus
from icdtransfer.evaluate.metrics import MACRO_CONVENTION
from icdtransfer.report.ablation import CSV_COLUMNS, Ablation, ablation_csv, build_ablation
from icdtransfer.report.aggregate import BEST, Report, build_report, converged_text
from icdtransfer.report.bootstrap import format_p
from icdtransfer.report.convergence import Convergence, study_convergence
from icdtransfer.report.cost import Costs, build_costs, with_cost
from icdtransfer.report.data_size import DataSize, build_data_size, crossings_frame, data_size_csv
from icdtransfer.report.forest import headline, verdict_table
from icdtransfer.report.systems import Gold, System, baseline_system, study_systems
from icdtransfer.report.tables import caption2, caption3, table2, table3
from icdtransfer.report.verdicts import METRICS, NOT_REPLICATED, on_all_seeds, verdict_text

log = logging.getLogger(__name__)


def markdown(frame: pd.DataFrame, title: str, note: str) -> str:
    """A Markdown table (numbers to one decimal; p-values arrive as printed text)."""

    def cell(column: str, value: object) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.1f}"
        return str(value)

    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(frame.columns) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(cell(c, row[c]) for c in frame.columns) + " |")
    return "\n".join([*lines, "", note, ""])


def summary(report: Report, study: str, convergence: Convergence) -> dict:
    listing = convergence.listing()
    out: dict = {
        "study": study,
        "replicates": report.replicates,
        "macro_convention": MACRO_CONVENTION,
        "thresholds": THRESHOLD_TEXT,
        "members": len(convergence.members),
        "unconverged_members": json.loads(listing.to_json(orient="records")),
    }
    for kind in THRESHOLD_KINDS:
        frame = report.scores[report.scores["threshold_kind"] == kind]
        section: dict = {}
        for row in frame.itertuples():
            section[row.system] = {
                "seeds": row.seeds,
                "converged": converged_text(row.members_converged, row.members_recorded),
                **{
                    key: value
                    for metric in ("micro_f", "macro_f_all_labels", "macro_f")
                    for key, value in (
                        (metric, getattr(row, metric)),
                        (
                            f"{metric}_ci",
                            [getattr(row, f"{metric}_low"), getattr(row, f"{metric}_high")],
                        ),
                    )
                },
            }
        section["table3_variant"] = {
            "variant": report.choices[kind].variant,
            "how": report.choices[kind].how,
        }
        pvalues = on_all_seeds(report.pvalues)
        best = pvalues[(pvalues["threshold_kind"] == kind) & (pvalues["family"] == BEST)]
        if not best.empty:
            pair = best.iloc[0]
            section["best_vs_second_best"] = {
                "chosen_on": "validation macro-F",
                "system": pair["system"],
                "against": pair["against"],
                "macro_f_all_labels_delta": pair["macro_f_all_labels_delta"],
                "macro_f_delta": pair["macro_f_delta"],
                "macro_f_p_holm": format_p(pair["macro_f_all_labels_p_holm"]),
                "macro_f_verdict": verdict_text(pair, "macro_f_all_labels"),
            }
        out[kind] = section
    return out


VERDICT_NOTE = (
    f"Threshold: {THRESHOLD_TEXT['tuned']}. macro_f_all_labels is the paper's Macro-F (the mean"
    " of per-code F over all codes). Paired difference on test in points with its 95% interval"
    " (patients resampled, seeds half-sampled), the verdict on all seeds at Holm-adjusted 0.05"
    " (within the comparison's family), and the verdicts on the first and the second half of"
    " the seeds; 'did not replicate': the halves disagree."
)


def all_comparisons(
    report: Report,
    systems: list[System],
    ablation: Ablation | None,
    gains_by: list[DataSize],
    costs: Costs,
) -> pd.DataFrame:
    """Every comparison of the report (over `systems`), the ablation and the data-size study,
    on every seed set, with each side's compute hours and the gain per hour (verdicts.csv)."""
    parts = [with_cost(report.pvalues, systems, costs)]
    if ablation is not None:
        parts.append(with_cost(ablation.comparisons, ablation.systems, costs))
    for by in gains_by:
        parts.append(with_cost(by.gains.drop(columns=by.dimension), by.systems, costs))
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def verdict_counts(verdicts: pd.DataFrame) -> dict:
    """summary.json's verdicts: per metric, how many all-seeds comparisons (tuned threshold)
    are better, worse or show no detectable difference, and how many did not replicate."""
    frame = headline(verdicts)
    out: dict = {"comparisons": len(frame)}
    for metric in METRICS:
        if frame.empty:
            break
        counts = frame[f"{metric}_verdict"].value_counts().to_dict()
        out[metric] = {
            **{k: int(v) for k, v in counts.items()},
            "did_not_replicate": int((frame[f"{metric}_replication"] == NOT_REPLICATED).sum()),
        }
    return out


def run_report(
    cfg: ReportConfig,
    target_dir: str,
    results_dir: str,
    baseline_dirs: dict[str, str],
    stage1_dir: str | None = None,
) -> dict:
    """Write reports/: summary.json, tables/, deciles.csv, frequency.csv, ablation.csv and
    ablation_deciles.csv (header only when `cfg.ablation` is null), dashboard.html.

    `baseline_dirs`: baseline method (lr, lr_l2r, lr_l2r_nerc) -> member directory; the LR is
    required, a missing L2R member is left out of the tables with a warning. `stage1_dir`:
    the stage-1 member the transfer members start from (its compute is shared among them)."""
    from icdtransfer.report.dashboard import Views, write_dashboard

    corpus = Corpus.open(target_dir)
    results = Path(results_dir)
    systems = []
    for method, folder in baseline_dirs.items():
        if method != "lr" and not (Path(folder) / "probs_test.npy").exists():
            log.warning("no %s member in %s: left out of Table 3", method, folder)
            continue
        systems.append(baseline_system(Path(folder), method))
    studied = study_systems(results / cfg.study)
    systems.extend(studied)
    gold = Gold.of(corpus)
    report = build_report(systems, gold, cfg.bootstrap, cfg.seed, cfg.table3_variant)
    ablation = (
        build_ablation(results / cfg.ablation, gold, cfg.bootstrap, cfg.seed)
        if cfg.ablation
        else None
    )
    gains_by = [  # each transfer variant's gain over scratch by training size, by pooling
        build_data_size(results / study, gold, cfg.bootstrap, cfg.seed, dimension)
        for study, dimension in ((cfg.data_size, "train_fraction"), (cfg.pooling, "pooling"))
        if study
    ]
    views = Views(studied, study_convergence(results), ablation, systems, gains_by)
    with atomic_dir(cfg.out_dir) as tmp:
        tables = tmp / "tables"
        tables.mkdir()
        markdowns = {}
        for kind in THRESHOLD_KINDS:
            for name, builder, note, title in (
                ("table2", table2, caption2, "Table 2: layer-by-layer transfer variants"),
                (
                    "table3",
                    table3,
                    caption3,
                    "Table 3: the paper's baselines, CNN without transfer, a transfer variant",
                ),
            ):
                frame = builder(report, kind)
                frame.to_csv(tables / f"{name}_{kind}.csv", index=False)
                text = markdown(frame, f"{title} ({kind} threshold)", note(report, kind))
                (tables / f"{name}_{kind}.md").write_text(text, encoding="utf-8")
                markdowns[(name, kind)] = text
        report.scores.to_csv(tables / "systems.csv", index=False)
        report.pvalues.to_csv(tables / "pvalues.csv", index=False)
        costs = build_costs(results, stage1_dir, baseline_dirs)
        verdicts = all_comparisons(report, systems, ablation, gains_by, costs)
        views.costs, views.verdicts = costs, verdicts
        spent = costs.per_variant()
        spent.to_csv(tables / "cost.csv", index=False)
        verdicts.to_csv(tables / "verdicts.csv", index=False)
        shown = verdict_table(verdicts)
        (tables / "verdicts.md").write_text(
            markdown(shown, "Verdicts (tuned threshold)", VERDICT_NOTE) if len(shown) else "",
            encoding="utf-8",
        )
        report.deciles.to_csv(tmp / "deciles.csv", index=False)
        # one small file per system for `dvc plots show` (one line per file)
        curves = tmp / "plots" / "deciles"
        curves.mkdir(parents=True)
        tuned = report.deciles[report.deciles["threshold_kind"] == "tuned"]
        for system, part in tuned.groupby("system", sort=False):
            name = re.sub(r"[^A-Za-z0-9]+", "_", system).strip("_")  # "LR + L2R" -> LR_L2R
            part[["decile", "macro_f_all_labels", "macro_f"]].to_csv(
                curves / f"{name}.csv", index=False
            )
        report.frequency.to_csv(tmp / "frequency.csv", index=False)
        # header only without an ablation study: the files are the stage's outputs either way
        numbers = ablation_csv(ablation) if ablation else pd.DataFrame(columns=CSV_COLUMNS)
        deciles = ablation.deciles if ablation else pd.DataFrame(columns=["dimension", "value"])
        numbers.to_csv(tmp / "ablation.csv", index=False)
        deciles.to_csv(tmp / "ablation_deciles.csv", index=False)
        result = summary(report, cfg.study, views.convergence)
        result["verdicts"] = verdict_counts(verdicts)
        result["cost_hours"] = {
            f"{r.study}: {r.variant}": r.hours for r in spent.itertuples() if r.variant == "all"
        }
        for by in gains_by:
            data_size_csv(by).to_csv(tables / f"{by.table}.csv", index=False)
            if by.dimension == "train_fraction":
                crossings_frame(by).to_csv(tables / "data_size_crossings.csv", index=False)
                result["data_size"] = {"study": by.study, "crossings": by.texts()}
            else:
                result[by.table] = {"study": by.study, "verdicts": by.verdicts()}
        (tmp / "summary.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        write_dashboard(tmp / "dashboard.html", report, results, corpus, cfg, views)
    log.info("wrote %s\n%s", cfg.out_dir, markdowns[("table2", "tuned")])
    return result
