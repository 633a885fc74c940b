"""`icdtransfer sweep --study NAME --status`: a study's state, without running it.

Reads only (the authoritative copy: the URI, or the local storage folder): whether the next
run resumes and if not why, who holds the study's lock, the trials by status as Tune last
saved them, the members stored, and where all of it lives. Starts no Ray instance.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from icdtransfer.sweep.lock import describe, holder
from icdtransfer.sweep.members import INDEX, STORE
from icdtransfer.sweep.results import trial_status
from icdtransfer.sweep.runner import (
    EXPERIMENT,
    Plan,
    StudyRequest,
    _grid_size,
    explain_resume,
    plan_study,
    previous_manifest,
)

STATES = ("TERMINATED", "EARLY_STOPPED", "ERROR", "RUNNING", "PENDING", "PAUSED")


def study_status(request: StudyRequest) -> str:
    """The summary `--status` prints (module docstring)."""
    plan = plan_study(request)
    study, root = plan.study, plan.root
    lines = [f"study {study.name} ({study.kind}), key {plan.manifest.key}"]
    lines.append(f"state: {root.where(plan.folder)}")
    if root.uri is not None:
        lines.append(f"head's working copy: {root.local / plan.folder}")
    lines.append(explain_resume(plan, previous_manifest(plan)))
    held = holder(plan.lock_path)
    lines.append(f"lock: {describe(study.name, held, plan.lock_path) if held else 'free'}")
    expected = study.num_samples * _grid_size(study)
    counts, used = _trials(plan)
    if counts is None:
        lines.append(f"trials: none recorded under this key ({expected} to run)")
    else:
        seen = sum(counts.values())
        parts = [f"{counts[s]} {s.lower().replace('_', '-')}" for s in STATES if counts[s]]
        parts.append(f"{max(expected - seen, 0)} not started")
        lines.append(
            f"trials ({expected} in the study, as Tune last saved them): {', '.join(parts)}"
        )
    index = _index_rows(plan)
    mine = sum(1 for row in index if row.get("study") == study.name)
    present = sum(1 for key in used if key in {(r["key"], r["seed"]) for r in index})
    lines.append(
        f"members: {present} stored for this key's finished trials, {mine} trained by this "
        f"study, {len(index)} in the store ({root.where(STORE)})"
    )
    out = Path(request.sweep.results_dir) / study.name / "best.json"
    written = (
        f"written {time.strftime('%Y-%m-%d %H:%M', time.localtime(out.stat().st_mtime))}"
        if out.exists()
        else "not written"
    )
    lines.append(f"results: {out.parent} ({written})")
    return "\n".join(lines)


def _trials(plan: Plan) -> tuple[Counter | None, list[tuple[str, int]]]:
    """Trials by status and the members finished trials use, from Tune's saved experiment."""
    from ray.tune import ExperimentAnalysis

    storage_path, filesystem = plan.root.tune_storage(plan.folder)
    try:
        analysis = ExperimentAnalysis(f"{storage_path}/{EXPERIMENT}", storage_filesystem=filesystem)
    except (FileNotFoundError, ValueError, RuntimeError):
        return None, []
    counts: Counter = Counter()
    used: list[tuple[str, int]] = []
    for trial in analysis.trials:
        status = trial.status
        if status == "TERMINATED":  # finished or stopped by ASHA (Trial.error_file would
            status = trial_status(trial.last_result or {}, None)  # need a Ray session)
        counts[status] += 1
        result = trial.last_result or {}
        if result.get("final"):
            used += [(result["member_key"], int(s)) for s in result["seeds"]]
    return counts, used


def _index_rows(plan: Plan) -> list[dict]:
    text = plan.root.read_text(f"{STORE}/{INDEX}") or ""
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a torn last line: the next run drops it
            continue
    return rows
