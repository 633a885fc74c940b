"""`icdtransfer sweep --study NAME --plan`: what a study will train, what it will reuse, and
about how long it will take on this machine, before anything runs.

Reads only: the study file, the member store's index and markers (the authoritative copy, as
`--status` does) and the member.json files under sweep.results_dir. Starts no Ray instance,
writes nothing.

* Members: a grid study needs every configuration of its space x the seeds each trial
  obtains (its ensemble's `seeds[:ensemble_size]`, or every study seed with every_seed); an
  optuna study needs its points' members, and up to `seeds per trial` members for each of the
  `num_samples - len(points)` trials Optuna samples (configurations not known in advance).
  Members are counted once by (member key, seed), the key a trial computes (trial.py), and
  those the store holds are reused.
* Epochs of a member to train: the median epochs run by measured members (results/, and
  member.out_dir's) of the same variant whose run the same cap could have produced (same
  epoch cap, or converged), preferring the same train_fraction; else a range from other
  variants' median to the cap; else the cap, an upper bound. Measured only at other
  train_fractions, it is a range: from the same epochs to the same optimizer steps (epochs x
  their fraction / this one), at most the cap; a smaller training set's members need more
  epochs, and how many more is not known in advance.
* Seconds per epoch: the median `seconds_per_epoch` of measured members on this machine's
  device (member.json `device`), preferring the same variant, pooling and train_fraction.
  For another train_fraction only the training part of an epoch is scaled (its training
  documents over history.json's median `train_docs_per_s`): validation is the same whole
  split at every fraction.
* Wall time: the members' seconds summed, over the trials that can run at once:
  max_concurrent, bounded by the Ray CPUs (ray.num_cpus) over the CPUs per trial, and by how
  many members can train at once (per member key, its trials or its seeds to train).
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from icdtransfer.sweep.epoch_times import (
    Estimate,
    Measured,
    epochs_estimate,
    measured_members,
    seconds_estimate,
    this_device,
)
from icdtransfer.sweep.index import INDEX, local_markers
from icdtransfer.sweep.members import STORE, member_key
from icdtransfer.sweep.runner import Plan, StudyRequest, plan_study
from icdtransfer.sweep.study import Study
from icdtransfer.sweep.trial import member_configs


@dataclass(frozen=True)
class Need:
    """One member the study needs."""

    key: str
    seed: int
    variant: str
    train_fraction: float
    pooling: str
    epoch_cap: int
    stored: bool


@dataclass
class Group:
    """One line of the table: the members of one variant (and train_fraction, pooling when
    the study searches them)."""

    label: tuple
    train: int = 0
    reuse: int = 0
    seconds: float = 0.0
    seconds_high: float = 0.0  # the range's upper end (= seconds for point estimates)
    unknown: int = 0  # members to train with no epoch time to estimate from


@dataclass
class StudyPlan:
    """What `--plan` prints (module docstring), as numbers."""

    study: Study
    trials: int
    needs: list[Need]
    groups: list[Group]
    member_seconds: dict[tuple[str, int], float | None]  # members to train: estimated seconds
    member_seconds_high: dict[tuple[str, int], float] = field(default_factory=dict)
    sampled_trials: int = 0  # optuna: trials beyond the points
    sampled_members: int = 0  # ... and the most members they may train
    sampled_seconds: float | None = None  # ... and their most seconds
    parallelism: int = 1
    parallelism_why: str = ""
    sources: list[str] = field(default_factory=list)

    @property
    def to_train(self) -> list[Need]:
        return [n for n in self.needs if not n.stored]

    @property
    def to_reuse(self) -> list[Need]:
        return [n for n in self.needs if n.stored]

    @property
    def known_seconds(self) -> float:
        return sum(s for s in self.member_seconds.values() if s is not None)

    @property
    def known_seconds_high(self) -> float:
        return sum(self.member_seconds_high.values())

    @property
    def wall_seconds(self) -> float:
        """The known members' seconds (and the sampled trials' upper bound) / parallelism."""
        return (self.known_seconds + (self.sampled_seconds or 0.0)) / self.parallelism

    @property
    def wall_seconds_high(self) -> float:
        return (self.known_seconds_high + (self.sampled_seconds or 0.0)) / self.parallelism


def study_plan(request: StudyRequest, also: tuple[str, ...] = ()) -> str:
    """The text `--plan` prints (and a sweep, before it starts); `also`: folders of members
    trained outside the study store (member.out_dir), measured too."""
    return format_plan(build_plan(request, also))


def build_plan(request: StudyRequest, also: tuple[str, ...] = ()) -> StudyPlan:
    plan = plan_study(request)
    study = plan.study
    stored = stored_members(plan)
    configs, sampled = study_configs(study)
    needs: dict[tuple[str, int], Need] = {}
    trials_per_key: dict[str, int] = {}
    for config in configs:
        head, train = member_configs(
            SimpleNamespace(fixed=dict(study.train), head=request.head, train=request.train),
            config,
        )
        variant = config["variant"]
        key = member_key(
            request.encoder,
            head,
            train,
            variant,
            plan.manifest.corpus,
            plan.manifest.stage1,
            plan.manifest.code,
        )
        repeats = study.num_samples if study.kind == "grid" else 1
        trials_per_key[key] = trials_per_key.get(key, 0) + repeats
        for seed in trial_seeds(study, int(config.get("ensemble_size", 1))):
            needs.setdefault(
                (key, seed),
                Need(
                    key,
                    seed,
                    variant,
                    float(train.train_fraction),
                    str(head.pooling),
                    int(train.epochs),
                    (key, seed) in stored,
                ),
            )
    measured = measured_members(request.sweep.results_dir, also)
    device = this_device(study)
    sources: dict[str, None] = {}
    cache: dict[tuple, tuple[Estimate, Estimate]] = {}

    def estimate(variant: str, fraction: float, pooling: str, cap: int):
        shape = (variant, fraction, pooling, cap)
        if shape not in cache:
            epochs = epochs_estimate(measured, variant, fraction, cap)
            spe = seconds_estimate(measured, device, variant, fraction, pooling)
            cache[shape] = (epochs, spe)
            what = f"{variant}" + (f" train_fraction {fraction:g}" if fraction != 1 else "")
            sources[f"epochs {what}: {epochs.source}"] = None
            sources[f"s/epoch {what}: {spe.source}"] = None
        return cache[shape]

    groups: dict[tuple, Group] = {}
    seconds: dict[tuple[str, int], float | None] = {}
    seconds_high: dict[tuple[str, int], float] = {}
    for need in needs.values():
        label = group_label(study, need)
        group = groups.setdefault(label, Group(label))
        if need.stored:
            group.reuse += 1
            continue
        group.train += 1
        epochs, spe = estimate(need.variant, need.train_fraction, need.pooling, need.epoch_cap)
        if epochs.value is None or spe.value is None:
            seconds[(need.key, need.seed)] = None
            group.unknown += 1
        else:
            seconds[(need.key, need.seed)] = epochs.value * spe.value
            seconds_high[(need.key, need.seed)] = epochs.top * spe.value
            group.seconds += epochs.value * spe.value
            group.seconds_high += epochs.top * spe.value
    result = StudyPlan(
        study,
        trials=study.num_samples * (len(configs) if study.kind == "grid" else 1),
        needs=list(needs.values()),
        groups=sorted(groups.values(), key=lambda g: tuple(str(v) for v in g.label)),
        member_seconds=seconds,
        member_seconds_high=seconds_high,
        sources=[],
    )
    if sampled:
        result.sampled_trials = sampled
        result.sampled_members = sampled * len(trial_seeds(study, study.max_ensemble))
        result.sampled_seconds = sampled_seconds(
            study, request, measured, device, result.sampled_members, sources
        )
    busy = sum(
        min(trials_per_key[key], sum(1 for n in needs.values() if n.key == key and not n.stored))
        for key in trials_per_key
    )
    result.parallelism, result.parallelism_why = parallelism(
        study, request, busy + result.sampled_trials
    )
    result.sources = list(sources)
    return result


def study_configs(study: Study) -> tuple[list[dict[str, Any]], int]:
    """The trial configurations known in advance, and how many trials Optuna samples."""
    fixed = {k: s["value"] for k, s in study.space.items() if isinstance(s, dict) and "value" in s}
    if study.kind == "optuna":
        return [{**fixed, **point} for point in study.points], study.num_samples - len(study.points)
    names = list(study.space)
    choices = [s if isinstance(s, list) else [s["value"]] for s in study.space.values()]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)], 0


def trial_seeds(study: Study, size: int) -> list[int]:
    """The seeds one trial obtains (trial.py: its ensemble's, then with every_seed the rest)."""
    seeds = list(study.seeds[:size])
    if study.every_seed:
        seeds += [s for s in study.seeds if s not in seeds]
    return seeds


def group_label(study: Study, need: Need) -> tuple:
    label: tuple = (need.variant,)
    if "train_fraction" in study.space:
        label += (need.train_fraction,)
    if "pooling" in study.space:
        label += (need.pooling,)
    return label


def stored_members(plan: Plan) -> set[tuple[str, int]]:
    """(key, seed) of every member the store holds: its index (the authoritative copy) and,
    on a local storage_path, the markers (a member whose index line a kill lost)."""
    text = plan.root.read_text(f"{STORE}/{INDEX}") or ""
    found = set()
    for line in text.splitlines():
        try:
            row = json.loads(line)
            found.add((str(row["key"]), int(row["seed"])))
        except (ValueError, KeyError, TypeError):  # a torn last line: the next run drops it
            continue
    if plan.root.uri is None:
        found |= set(local_markers(plan.root.local / STORE))
    return found


def sampled_seconds(
    study: Study,
    request: StudyRequest,
    measured: list[Measured],
    device: str,
    members: int,
    sources: dict[str, None],
) -> float | None:
    """The most the sampled trials' members may take: the slowest variant of the space at
    the epoch cap, for every one of them."""
    spec = study.space["variant"]
    variants = spec if isinstance(spec, list) else [spec["value"]]
    cap = study.epoch_cap(request.train.epochs)
    per_member = []
    for variant in variants:
        spe = seconds_estimate(measured, device, variant, 1.0, request.head.pooling)
        if spe.value is None:
            sources[f"s/epoch sampled {variant}: {spe.source}"] = None
            return None
        per_member.append(cap * spe.value)
    sources[f"sampled trials: cap ({cap} epochs each) x the slowest variant's s/epoch"] = None
    return members * max(per_member)


def parallelism(study: Study, request: StudyRequest, busy: int) -> tuple[int, str]:
    """How many trials train at once, and why."""
    bounds = [(study.max_concurrent, f"max_concurrent {study.max_concurrent}")]
    if request.ray.address is None:
        cpus = request.ray.num_cpus or os.cpu_count() or 1
        if study.resources.cpu > 0:
            slots = int(cpus // study.resources.cpu)
            bounds.append((slots, f"{cpus} Ray CPUs / {study.resources.cpu:g} per trial"))
    else:
        bounds.append((study.max_concurrent, f"cluster {request.ray.address}: CPUs not known"))
    if study.resources.gpu > 0:
        import torch

        gpus = torch.cuda.device_count()
        bounds.append((int(gpus // study.resources.gpu), f"{gpus} GPUs here"))
    bounds.append((busy, f"members trainable at once {busy}"))
    value = max(1, min(b for b, _ in bounds))
    return value, ", ".join(why for _, why in bounds)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def span(low: float, high: float) -> str:
    """A duration, or a range of two ("4.1-6.3 min") where the estimate is one."""
    if high <= low * 1.001:
        return duration(low)
    a, b = duration(low), duration(high)
    if a.split()[1] == b.split()[1]:
        return f"{a.split()[0]}-{b}"
    return f"{a} to {b}"


def format_plan(result: StudyPlan) -> str:
    study = result.study
    header = ["variant"]
    if "train_fraction" in study.space:
        header.append("train_fraction")
    if "pooling" in study.space:
        header.append("pooling")
    rows = [[*header, "train", "reuse", "est. member time"]]
    for g in result.groups:
        est = "-" if not g.train else span(g.seconds, g.seconds_high) if not g.unknown else (
            f"? ({g.unknown} unmeasured)" if g.unknown == g.train else
            f">= {duration(g.seconds)} ({g.unknown} unmeasured)")  # fmt: skip
        rows.append([*(f"{v:g}" if isinstance(v, float) else str(v) for v in g.label),
                     str(g.train), str(g.reuse), est])  # fmt: skip
    if result.sampled_trials:
        est = "?" if result.sampled_seconds is None else f"<= {duration(result.sampled_seconds)}"
        rows.append(["sampled", *[""] * (len(header) - 1), f"<= {result.sampled_members}", "?",
                     est])  # fmt: skip
    train, reuse = len(result.to_train), len(result.to_reuse)
    unknown = sum(1 for s in result.member_seconds.values() if s is None)
    total = "-" if not train else (
        span(result.known_seconds, result.known_seconds_high)) if not unknown else (
        "?" if unknown == train else f">= {duration(result.known_seconds)}")  # fmt: skip
    rows.append(["total", *[""] * (len(header) - 1), str(train), str(reuse), total])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = [
        "  ".join(
            c.ljust(w) if i < len(header) else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()  # fmt: skip
        for r in rows
    ]
    kind = f"{study.kind}, {result.trials} trials"
    lines = [f"plan for study {study.name} ({kind}): {len(result.needs)} members known in "
             f"advance, {train} to train, {reuse} to reuse from the member store"]  # fmt: skip
    if result.sampled_trials:
        lines.append(
            f"optuna: {result.sampled_trials} trials beyond the points sample configurations "
            f"not known in advance: up to {result.sampled_members} more members to train"
        )
    lines += table
    wall = span(result.wall_seconds, result.wall_seconds_high)
    if not train and not result.sampled_trials:
        lines.append("wall time: nothing to train")
    elif unknown == train and train and result.sampled_seconds is None:
        lines.append("wall time: unknown (no measured epoch time: run one member first)")
    else:
        bound = "up to " if result.sampled_trials else ""
        partial = f", not counting {unknown} unmeasured members" if unknown else ""
        lines.append(
            f"wall time here: {bound}~{wall} of training ({result.parallelism} at once: "
            f"{result.parallelism_why}{partial}); not counted: Ray's start and each member's"
            " final scoring"
        )
    if result.sources:
        lines.append("estimates:")
        lines += [f"  {s}" for s in result.sources]
    return "\n".join(lines)
