"""What a finished study writes to `results/<study>/` (runner.py's docstring lists the files),
from Tune's results and the member store's rows: whole or not at all."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from icdtransfer.data.atomic import atomic_dir
from icdtransfer.rows import TRIAL_COLUMNS, TrialStatus
from icdtransfer.sweep.faults import fault
from icdtransfer.sweep.members import STORE, TRIAL_LOG
from icdtransfer.sweep.reporting import CLOCK, FIRST_MEMBER_METRIC
from icdtransfer.sweep.study import Study

log = logging.getLogger(__name__)


def write_results(
    out: Path,
    plan: Any,  # runner.Plan (not imported: runner imports this module)
    trials: pd.DataFrame,
    members: pd.DataFrame,
    used: list[tuple[str, int]],
    best: dict,
) -> None:
    """results/<study>/, whole or not at all (module docstring)."""
    local = plan.root.local
    with atomic_dir(out) as tmp:
        trials.to_parquet(tmp / "trials.parquet", index=False)
        fault("results_partly_written")
        members.to_parquet(tmp / "members.parquet", index=False)
        (tmp / "members").mkdir()
        for key, seed in used:  # a copy: each study's results stand on their own
            shutil.copytree(
                local / STORE / key / f"seed{seed}",
                tmp / "members" / key / f"seed{seed}",
                ignore=shutil.ignore_patterns(".*"),
            )
        (tmp / "search").mkdir()
        if plan.study.kind == "optuna":
            shutil.copyfile(local / plan.folder / "optuna.db", tmp / "search" / "optuna.db")
        else:
            (tmp / "search" / "grid.json").write_text(json.dumps(plan.study.space, indent=2) + "\n")
        shutil.copyfile(local / plan.folder / TRIAL_LOG, tmp / "trial_starts.jsonl")
        (tmp / "best.json").write_text(json.dumps(best, indent=2, default=str) + "\n")
        fault("results_before_rename")


def members_used(trials: pd.DataFrame) -> list[tuple[str, int]]:
    """(key, seed) of every member a finished trial's ensemble averaged, or, in an every_seed
    study, every member it obtained (`member_seeds`), in trial order."""
    used: dict[tuple[str, int], None] = {}
    if "member_key" not in trials:
        return []
    column = "member_seeds" if "member_seeds" in trials else "seeds"
    for row in trials[trials["status"] == "TERMINATED"].itertuples():
        for seed in json.loads(getattr(row, column)):
            used[(row.member_key, int(seed))] = None
    return list(used)


def credit_lost_trials(trials: pd.DataFrame, members: pd.DataFrame, study: str) -> None:
    """A member this study trained in a Tune trial that its saved state never had (the driver
    was lost before Tune saved the trial; the restored Optuna study asked for the same
    configuration again, and the new Tune trial reused the member) is credited, in place, to
    the first finished trial that uses it: `members_trained_here` and the member's
    `trial_id` name the trial that stands for the lost one in trials.parquet."""
    if members.empty or "member_key" not in trials or "trial_id" not in members:
        return
    known = set(trials["trial_id"])
    finished = trials[trials["status"] == "TERMINATED"]
    for i, member in members.iterrows():
        if member.get("study") != study or member["trial_id"] in known:
            continue
        for j, row in finished.iterrows():
            if row["member_key"] == member["key"] and member["seed"] in json.loads(row["seeds"]):
                trials.loc[j, "members_trained_here"] += 1
                members.loc[i, "trial_id"] = row["trial_id"]
                break


def prune_checkpoints(results) -> int:
    """Remove the Tune checkpoints of trials that ended without error, once the study's state
    (which says they ended) is saved: Tune keeps every checkpoint while a trial runs
    (runner._checkpoints), and an ended trial is never resumed. A failed trial keeps its
    checkpoints for `--retry-errored`. Returns how many were removed."""
    import pyarrow.fs as pafs

    removed = 0
    for result in results:
        if result.error is not None:
            continue
        fs = result.filesystem
        try:
            for info in fs.get_file_info(pafs.FileSelector(result.path, allow_not_found=True)):
                if info.type == pafs.FileType.Directory and info.base_name.startswith(
                    "checkpoint_"
                ):
                    fs.delete_dir(info.path)
                    removed += 1
        except OSError as err:  # best effort: the checkpoints only take room
            log.warning("could not remove the checkpoints of %s: %s", result.path, err)
    return removed


def trial_status(metrics: dict, error: object) -> TrialStatus:
    """A trial that has ended: failed, finished (it made its final report), or stopped by
    the scheduler (ASHA) before it."""
    if error is not None:
        return "ERROR"
    return "TERMINATED" if metrics.get("final") else "EARLY_STOPPED"


def trial_table(results) -> pd.DataFrame:
    """One row per trial: its config, status, final metrics, time and node."""
    rows = []
    for result in results:
        metrics = dict(result.metrics or {})
        config = result.config or {}
        row = {
            "trial_id": metrics.get("trial_id") or Path(result.path).name,
            "status": trial_status(metrics, result.error),
            "error": None if result.error is None else type(result.error).__name__,
        }
        row.update({f"config_{k}": v for k, v in config.items()})
        if metrics.get("final"):
            keep = [k for k in metrics if k.startswith(("test_", "val_")) or k in TRIAL_COLUMNS]
            row.update({k: metrics[k] for k in keep if k != FIRST_MEMBER_METRIC})
        elif row["status"] == "EARLY_STOPPED":  # where ASHA stopped it, on the trial clock
            row["stopped_at_member_epoch"] = metrics.get(CLOCK)
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in frame.columns:  # lists (deciles, seeds, epochs) are stored as JSON text
        if frame[column].map(lambda v: isinstance(v, list | dict)).any():
            frame[column] = frame[column].map(lambda v: json.dumps(v) if v is not None else None)
    return frame


def best_trial(trials: pd.DataFrame, study: Study) -> dict:
    done = trials[trials["status"] == "TERMINATED"]
    if done.empty or study.metric not in done:
        return {"study": study.name, "trials": len(trials), "finished": 0}
    best = done.sort_values(study.metric, ascending=study.mode == "min").iloc[0]
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in best.items() if pd.notna(v)}
    return {
        "study": study.name,
        "metric": study.metric,
        "mode": study.mode,
        "trials": len(trials),
        "finished": len(done),
        **row,
    }
