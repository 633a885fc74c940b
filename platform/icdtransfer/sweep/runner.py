"""`icdtransfer sweep --study NAME`: a study file -> Ray Tune (+ Optuna, + ASHA) -> results/.

State under `ray.storage_path` (a folder or a URI; storage.py):

    members/                      the member store, shared by every study (members.py)
    studies/<name>/latest.json    the manifest of the study's last run (manifest.py)
    studies/<name>/<key>/         the study's resumable state under its key:
        manifest.json             what the key covers, component by component
        tune/                     Ray Tune's experiment (trials, their checkpoints)
        optuna.db                 the Optuna study (kind: optuna)
        trial_starts.jsonl        one line per trial start (and where it resumed)

Running the same command again after an interruption restores the Tuner, keeps every
finished trial and stored member, resumes unfinished trials from their last checkpoint and
runs only what is left; with `--retry-errored`, failed trials are retried too. A run under a
new key (the study, the member settings, the corpus, the stage-1 model or the code changed)
starts afresh and logs which components changed. One run of a study at a time holds its lock
(lock.py). The outputs are written to `results/<study>/` at the end, whole or not at all:

    trials.parquet    one row per trial: config, status, validation and test metrics at both
                      thresholds, decile macro-F, the members' convergence, time, node
    members.parquet   one row per member the study's finished trials use (key, seed, config,
                      convergence, metrics, node, time, the study and trial that trained it)
    members/          those members' files (model, probabilities, metrics, member.json)
    search/           the Optuna study (optuna.db) or the grid (grid.json)
    best.json         the best finished trial by the study's metric (a DVC metric)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from icdtransfer.artifacts import MODEL_FILE
from icdtransfer.config import (
    EncoderConfig,
    HeadConfig,
    RayConfig,
    SweepConfig,
    TrainTargetConfig,
)
from icdtransfer.data.atomic import atomic_file
from icdtransfer.data.ship import digest_folder
from icdtransfer.sweep import SweepInterrupted
from icdtransfer.sweep.faults import arm, fault, fault_points
from icdtransfer.sweep.lock import study_lock
from icdtransfer.sweep.manifest import Manifest
from icdtransfer.sweep.members import TRIAL_LOG
from icdtransfer.sweep.reporting import checkpoint_seconds
from icdtransfer.sweep.results import (
    best_trial,
    credit_lost_trials,
    members_used,
    prune_checkpoints,
    trial_table,
    write_results,
)
from icdtransfer.sweep.storage import StateRoot
from icdtransfer.sweep.study import Study, load_study

log = logging.getLogger(__name__)
NAMESPACE = "icdtransfer"
MANIFEST = "manifest.json"
LATEST = "latest.json"
EXPERIMENT = "tune"


def _checkpoints():
    """Every Tune checkpoint of a trial is kept. Tune deletes a checkpoint beyond num_to_keep
    at once, but uploads the experiment state that names the latest ones in the background:
    a driver lost in between resumed its trial from a checkpoint that no longer existed, and
    the trial ended in ERROR (`--retry-errored` too: same missing checkpoint)."""
    from ray import tune

    return tune.CheckpointConfig(num_to_keep=None)


def study_path(studies_dir: str, name: str) -> Path:
    """A study's file: `name` itself when it is a .yaml path, else <studies_dir>/<name>.yaml."""
    path = Path(name)
    return path if path.suffix in (".yaml", ".yml") else Path(studies_dir) / f"{name}.yaml"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else "missing"


@dataclass(frozen=True)
class StudyRequest:
    """What `icdtransfer sweep --study NAME` runs: the study's name and the params sections
    a sweep reads (members are built from encoder, head and train with the study's
    overrides, on the corpus in target_dir)."""

    name: str
    sweep: SweepConfig
    encoder: EncoderConfig
    head: HeadConfig
    train: TrainTargetConfig
    target_dir: str
    ray: RayConfig


@dataclass
class Plan:
    """A study as a run (or `--status`) sees it before touching Ray: what it is, under which
    key, and where its state lives."""

    study: Study
    manifest: Manifest
    root: StateRoot
    target_dir: str
    pretrained: Path

    @property
    def home(self) -> str:  # relative to the root
        return f"studies/{self.study.name}"

    @property
    def folder(self) -> str:  # the state of this key, relative to the root
        return f"{self.home}/{self.manifest.key}"

    @property
    def lock_path(self) -> Path:
        return self.root.local / self.home / "lock"


def plan_study(request: StudyRequest) -> Plan:
    from icdtransfer.train.stages import code_digest

    study = load_study(study_path(request.sweep.studies_dir, request.name))
    target_dir = str(Path(request.target_dir).resolve())
    pretrained = Path(request.train.pretrained).resolve()
    manifest = Manifest.build(
        study,
        request.encoder,
        request.head,
        request.train,
        corpus=digest_folder(Path(target_dir)),
        stage1=file_digest(pretrained / MODEL_FILE),
        code=code_digest(),
    )
    root = StateRoot.open(request.ray.storage_path, request.ray.state_dir)
    return Plan(study, manifest, root, target_dir, pretrained)


def previous_manifest(plan: Plan) -> Manifest | None:
    """The manifest of the study's last run, from the authoritative copy of the state."""
    text = plan.root.read_text(f"{plan.home}/{LATEST}")
    return Manifest.from_json(json.loads(text)) if text else None


def explain_resume(plan: Plan, before: Manifest | None) -> str:
    """One line: does this run resume the study's state, and if not, why not."""
    key = plan.manifest.key
    if before is None:
        return f"study {plan.study.name}: no earlier run; starting under key {key}"
    if before.key == key:
        return f"study {plan.study.name}: resuming its state under key {key}"
    changed = "; ".join(plan.manifest.changes(before)) or "the key's definition"
    resumable = plan.root.exists(f"{plan.folder}/{MANIFEST}")
    action = f"resuming the state under key {key}" if resumable else f"starting key {key}"
    return (
        f"study {plan.study.name}: not resuming the last run's state (key {before.key}), "
        f"because it changed: {changed}; {action}"
    )


def begin(plan: Plan) -> str:
    """Restore the study's working copy from the storage, record this run's manifest there,
    and say whether (and if not, why not) it resumes."""
    root, folder = plan.root, plan.folder
    before = previous_manifest(plan)
    explanation = explain_resume(plan, before)
    if before is not None and before.key == plan.manifest.key:
        for change in plan.manifest.runtime_changes(before):
            log.warning("study %s: %s ignored: a resumed study keeps it", plan.study.name, change)
    for rel in (f"{folder}/{MANIFEST}", f"{folder}/optuna.db", f"{folder}/{TRIAL_LOG}"):
        root.pull(rel)
    if not (root.local / folder / MANIFEST).exists():
        _write_json(root, f"{folder}/{MANIFEST}", plan.manifest.to_json())
    _write_json(root, f"{plan.home}/{LATEST}", plan.manifest.to_json())
    return explanation


def run_study(request: StudyRequest, retry_errored: bool = False) -> dict:
    """Run (or resume) one study over stage 2 under the study's lock; returns the best
    trial's row."""
    plan = plan_study(request)
    checkpoint_s = checkpoint_seconds()  # a bad ICDTRANSFER_CHECKPOINT_S fails before any work
    with study_lock(plan.lock_path, plan.study.name):
        return _run(plan, request, retry_errored, checkpoint_s)


def _run(plan: Plan, request: StudyRequest, retry_errored: bool, checkpoint_s: float) -> dict:
    import ray
    from ray import tune

    from icdtransfer.data.ship import publish
    from icdtransfer.ray_env import connect
    from icdtransfer.sweep.members import MemberStore
    from icdtransfer.sweep.search import StudySearch, activate
    from icdtransfer.sweep.study import tune_space
    from icdtransfer.sweep.trial import TrialContext, sweep_trial

    study, root, folder = plan.study, plan.root, plan.folder
    sweep, encoder, head, train, ray_cfg = (
        request.sweep,
        request.encoder,
        request.head,
        request.train,
        request.ray,
    )
    log.info(begin(plan))
    log.info(
        "study %s: a member's Tune checkpoint every %g s of its training", study.name, checkpoint_s
    )
    arm()  # the fault-injection test's kill points (faults.py); nothing otherwise
    connect(ray_cfg)
    # Reports differ by design (first-member epochs for ASHA, one final report for the
    # search), so Tune's check that every report holds every metric is off; Tune's warning
    # that per-epoch checkpoints force frequent experiment-state syncs is expected too.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # the store is the storage root's (members.py); this run's actor is its door to it
    store_name = f"members-{study.name}-{plan.manifest.key}"
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
        .remote(root)
    )
    ctx = TrialContext(
        study=study.name,
        store=store_name,
        namespace=NAMESPACE,
        # the corpus and the stage-1 model travel through the object store (data/ship.py)
        target=publish(plan.target_dir),
        pretrained=publish(plan.pretrained) if plan.pretrained.is_dir() else None,
        pretrained_digest=plan.manifest.stage1,
        encoder=encoder,
        head=head,
        train=train,
        fixed=dict(study.train),
        seeds=study.seeds,
        cpus=study.resources.cpu,
        every_seed=study.every_seed,
        trial_log=f"{folder}/{TRIAL_LOG}",
        first_member_first=study.scheduler == "asha",
        checkpoint_s=checkpoint_s,
    )
    trainable = tune.with_resources(
        tune.with_parameters(sweep_trial, ctx=ctx),
        {"cpu": study.resources.cpu, "gpu": study.resources.gpu},
    )
    activate(study.name, root, folder)
    storage_path, filesystem = root.tune_storage(folder)
    experiment = f"{storage_path}/{EXPERIMENT}"
    if saved_experiment(root, folder):
        log.info("resuming study %s from %s", study.name, root.where(f"{folder}/{EXPERIMENT}"))
        tuner = tune.Tuner.restore(
            experiment,
            trainable=trainable,
            resume_errored=retry_errored,
            storage_filesystem=filesystem,
        )
    else:
        discard_unsaved(root, folder)
        tuner = tune.Tuner(
            trainable,
            param_space=tune_space(study),
            tune_config=tune.TuneConfig(
                num_samples=study.num_samples,
                search_alg=StudySearch(study) if study.kind == "optuna" else None,
                scheduler=_scheduler(study, train),
                max_concurrent_trials=study.max_concurrent,
                reuse_actors=True,  # a finished trial's process runs the next: no re-import
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=storage_path,
                storage_filesystem=filesystem,
                failure_config=tune.FailureConfig(max_failures=study.max_failures),
                checkpoint_config=_checkpoints(),
                callbacks=[fault_points()],
                verbose=1,
            ),
        )
    results = tuner.fit()
    expected = study.num_samples * _grid_size(study)
    if results.num_terminated + results.num_errors < max(len(results), expected):
        raise SweepInterrupted(
            f"study {study.name}: {results.num_terminated + results.num_errors} of {expected} "
            f"trials finished; run the same command again to resume from "
            f"{root.where(folder)}"
        )
    fault("driver_after_fit")
    trials = trial_table(results)
    if study.every_seed and "seeds" in trials:  # every finished trial obtained every seed
        trials["member_seeds"] = [
            json.dumps(study.seeds) if isinstance(s, str) else s for s in trials["seeds"]
        ]
    used = members_used(trials)
    members = pd.DataFrame(ray.get(store.rows.remote(used)))
    credit_lost_trials(trials, members, study.name)
    counts = ray.get(store.counts.remote())
    best = best_trial(trials, study)
    best["members_used"] = len(members)
    best["unconverged_members"] = (
        int((~members["converged"].astype(bool)).sum()) if len(members) else 0
    )
    write_results(Path(sweep.results_dir) / study.name, plan, trials, members, used, best)
    fault("driver_after_results")
    root.push(folder)
    prune_checkpoints(results)
    log.info(
        "study %s: %d trials (%d not finished), %d members (%d trained in this run); best %s = "
        "%.4f",
        study.name,
        len(trials),
        int((trials["status"] != "TERMINATED").sum()),
        len(members),
        counts["trained_this_run"],
        study.metric,
        best.get(study.metric, float("nan")),
    )
    if best["unconverged_members"]:
        log.warning(
            "study %s: %d of its %d members reached the epoch cap still improving (not "
            "converged): see the `converged` columns of members.parquet and trials.parquet",
            study.name,
            best["unconverged_members"],
            len(members),
        )
    return best


def saved_experiment(root: StateRoot, folder: str) -> bool:
    """Whether Tune saved the experiment's state (an experiment_state-*.json), not only its
    tuner.pkl: Tune writes that first, and a run killed before its first save left nothing to
    restore (Tuner.can_restore says yes, and the restored run had no search space)."""
    return any(
        "/" not in name and name.startswith("experiment_state-") and name.endswith(".json")
        for name in root.files(f"{folder}/{EXPERIMENT}")
    )


def discard_unsaved(root: StateRoot, folder: str) -> None:
    """Before a fresh start of a key: an Optuna database is from a run killed before Tune
    saved anything (its trials have no Tune trial): removed, here and on the URI."""
    path = root.local / folder / "optuna.db"
    if path.exists() or root.exists(f"{folder}/optuna.db"):
        log.warning("study state %s: Optuna's trials of a run that saved no Tune state: removed",
                    root.where(folder))  # fmt: skip
        path.unlink(missing_ok=True)
        root.delete(f"{folder}/optuna.db")


def _write_json(root: StateRoot, rel: str, data: dict) -> None:
    with atomic_file(root.local / rel) as handle:
        handle.write(json.dumps(data, indent=2, default=str) + "\n")
    root.push(rel)


def _grid_size(study: Study) -> int:
    size = 1
    if study.kind == "grid":
        for spec in study.space.values():
            size *= len(spec) if isinstance(spec, list) else 1
    return size


def _scheduler(study: Study, train: TrainTargetConfig):
    if study.scheduler != "asha":
        return None
    from icdtransfer.sweep.search import asha

    return asha(study, study.epoch_cap(train.epochs))
