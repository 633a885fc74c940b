"""`icdtransfer sweep --study NAME`: a study file -> Ray Tune (+ Optuna, + ASHA) -> results/.

Resumable state (Tune's experiment, the Optuna study database, stored members) lives in
`<ray.storage_path>/sweep-<study>-<key>/`, where the key covers the study file and everything
members depend on: running the same command again after an interruption restores the Tuner,
keeps every finished trial and member, and runs only what is left. The outputs are written to
`results/<study>/` at the end, whole or not at all:

    trials.parquet    one row per trial: config, status, validation and test metrics at both
                      thresholds, decile macro-F, time, node
    members.parquet   one row per trained member (key, seed, config, metrics, node, time)
    members/          the members' files (model, probabilities, metrics)
    search/           the Optuna study (optuna.db) or the grid (grid.json)
    best.json         the best finished trial by the study's metric (a DVC metric)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from icdtransfer.artifacts import MODEL_FILE, TRIAL_COLUMNS, TrialStatus
from icdtransfer.config import EncoderConfig, HeadConfig, RayConfig, SweepConfig, TrainTargetConfig
from icdtransfer.data.atomic import atomic_dir
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.ship import publish
from icdtransfer.ray_env import absolute_storage, connect
from icdtransfer.sweep import SweepInterrupted
from icdtransfer.sweep.members import MemberStore
from icdtransfer.sweep.study import Study, load_study, tune_space
from icdtransfer.sweep.trial import TrialContext, sweep_trial
from icdtransfer.train.stages import code_digest

log = logging.getLogger(__name__)
NAMESPACE = "icdtransfer"


def study_path(studies_dir: str, name: str) -> Path:
    """A study's file: `name` itself when it is a .yaml path, else <studies_dir>/<name>.yaml."""
    path = Path(name)
    return path if path.suffix in (".yaml", ".yml") else Path(studies_dir) / f"{name}.yaml"


def work_key(study_file: Path, parts: list[Any], corpus_stats: dict, pretrained: str) -> str:
    """What a sweep's resumable state belongs to: the study file, the sections members are
    built from, the corpus, the stage-1 model and the code."""
    text = json.dumps(
        [
            study_file.read_text(encoding="utf-8"),
            [dataclasses.asdict(p) for p in parts],
            corpus_stats,
            pretrained,
            code_digest(),  # other code: a fresh sweep, never a stale experiment resumed
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else "missing"


def run_study(
    name: str,
    sweep: SweepConfig,
    encoder: EncoderConfig,
    head: HeadConfig,
    train: TrainTargetConfig,
    target_dir: str,
    ray_cfg: RayConfig,
) -> dict:
    """Run (or resume) one study over stage 2 (members built from `encoder`, `head` and
    `train`, with the study's overrides, on the corpus in `target_dir`); returns the best
    trial's row."""
    import ray
    from ray import tune

    study_file = study_path(sweep.studies_dir, name)
    study = load_study(study_file)
    target_dir = str(Path(target_dir).resolve())
    corpus = Corpus.open(target_dir)
    pretrained = Path(train.pretrained).resolve()
    pretrained_digest = file_digest(pretrained / MODEL_FILE)
    storage = absolute_storage(ray_cfg.storage_path)
    key = work_key(study_file, [encoder, head, train], corpus.stats, pretrained_digest)
    experiment = f"sweep-{study.name}-{key}"
    work = Path(storage) / experiment
    connect(ray_cfg)
    store_name = f"members-{experiment}"
    store = (
        ray.remote(MemberStore)
        .options(
            name=store_name,
            namespace=NAMESPACE,
            num_cpus=0,
            get_if_exists=True,
            scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                node_id=ray.get_runtime_context().get_node_id(), soft=False
            ),
        )
        .remote(str(work / "members"))
    )
    ctx = TrialContext(
        store=store_name,
        namespace=NAMESPACE,
        # the corpus and the stage-1 model travel through the object store (data/ship.py)
        target=publish(target_dir),
        pretrained=publish(pretrained) if pretrained.is_dir() else None,
        pretrained_digest=pretrained_digest,
        encoder=encoder,
        head=head,
        train=train,
        fixed=dict(study.train),
        seeds=study.seeds,
        cpus=study.resources.cpu,
    )
    trainable = tune.with_resources(
        tune.with_parameters(sweep_trial, ctx=ctx),
        {"cpu": study.resources.cpu, "gpu": study.resources.gpu},
    )
    experiment_dir = str(work / "tune")
    if tune.Tuner.can_restore(experiment_dir):
        log.info("resuming study %s from %s", study.name, experiment_dir)
        tuner = tune.Tuner.restore(
            experiment_dir, trainable=trainable, resume_errored=False, restart_errored=False
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=tune_space(study),
            tune_config=tune.TuneConfig(
                metric=study.metric,
                mode=study.mode,
                num_samples=study.num_samples,
                search_alg=_searcher(study, work),
                scheduler=_scheduler(study),
                max_concurrent_trials=study.max_concurrent,
                reuse_actors=True,  # a finished trial's process runs the next: no re-import
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(work),
                failure_config=tune.FailureConfig(max_failures=study.max_failures),
                verbose=1,
            ),
        )
    results = tuner.fit()
    expected = study.num_samples * _grid_size(study)
    if results.num_terminated + results.num_errors < max(len(results), expected):
        raise SweepInterrupted(
            f"study {study.name}: {results.num_terminated + results.num_errors} of {expected} "
            f"trials finished; run the same command again to resume from {experiment_dir}"
        )
    trials = _trial_table(results, study)
    members = pd.DataFrame(ray.get(store.rows.remote()))
    counts = ray.get(store.counts.remote())
    best = _best(trials, study)
    best["members_stored"] = counts["stored"]
    out = Path(sweep.results_dir) / study.name
    with atomic_dir(out) as tmp:
        trials.to_parquet(tmp / "trials.parquet", index=False)
        members.to_parquet(tmp / "members.parquet", index=False)
        shutil.copytree(
            work / "members", tmp / "members", ignore=shutil.ignore_patterns(".*", "*.jsonl")
        )
        (tmp / "search").mkdir()
        if study.kind == "optuna":
            shutil.copyfile(work / "optuna.db", tmp / "search" / "optuna.db")
        else:
            (tmp / "search" / "grid.json").write_text(json.dumps(study.space, indent=2) + "\n")
        shutil.copyfile(work / "members" / "trial_starts.jsonl", tmp / "trial_starts.jsonl")
        (tmp / "best.json").write_text(json.dumps(best, indent=2, default=str) + "\n")
    log.info(
        "study %s: %d trials (%d failed), %d members; best %s = %.4f",
        study.name,
        len(trials),
        int((trials["status"] != "TERMINATED").sum()),
        counts["stored"],
        study.metric,
        best.get(study.metric, float("nan")),
    )
    return best


def _grid_size(study: Study) -> int:
    size = 1
    if study.kind == "grid":
        for spec in study.space.values():
            size *= len(spec) if isinstance(spec, list) else 1
    return size


def _searcher(study: Study, work: Path):
    if study.kind != "optuna":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    work.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{work / 'optuna.db'}")
    return OptunaSearch(
        metric=study.metric,
        mode=study.mode,
        seed=study.search_seed,
        storage=storage,
        study_name=study.name,
    )


def _scheduler(study: Study):
    if study.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    # One time step per reported member epoch (and one for the final ensemble report).
    return ASHAScheduler(
        time_attr="training_iteration", max_t=10_000, grace_period=2, reduction_factor=2
    )


def _trial_table(results, study: Study) -> pd.DataFrame:
    """One row per trial: its config, status, final metrics, time and node."""
    rows = []
    for result in results:
        metrics = dict(result.metrics or {})
        config = result.config or {}
        final = bool(metrics.get("final"))
        # Every trial has ended (run_study checked): without a final report and without an
        # error, the scheduler (ASHA) stopped it early.
        status: TrialStatus = (
            "ERROR" if result.error is not None else ("TERMINATED" if final else "EARLY_STOPPED")
        )
        row = {
            "trial_id": metrics.get("trial_id") or Path(result.path).name,
            "status": status,
            "error": None if result.error is None else type(result.error).__name__,
        }
        row.update({f"config_{k}": v for k, v in config.items()})
        keep = [k for k in metrics if k.startswith(("test_", "val_")) or k in TRIAL_COLUMNS]
        row.update({k: metrics[k] for k in keep})
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in frame.columns:  # lists (deciles, seeds) are stored as JSON text
        if frame[column].map(lambda v: isinstance(v, list | dict)).any():
            frame[column] = frame[column].map(lambda v: json.dumps(v) if v is not None else None)
    return frame


def _best(trials: pd.DataFrame, study: Study) -> dict:
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
