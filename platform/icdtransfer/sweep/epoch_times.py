"""Measured epoch times for `sweep --plan` (sweep/plan.py): the finished members under
sweep.results_dir and member.out_dir, and the epochs and seconds per epoch a member to train
is estimated to take from them (plan.py's docstring says how). Reads member.json and
history.json only."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from icdtransfer.sweep.index import MARKER
from icdtransfer.sweep.members import STORE
from icdtransfer.sweep.study import Study


@dataclass(frozen=True)
class Measured:
    """A finished member under sweep.results_dir, as its member.json records it."""

    study: str  # the results folder that holds it, e.g. results/table2
    key: str
    seed: int
    variant: str
    device: str
    seconds_per_epoch: float | None
    epochs: int
    epoch_cap: int
    converged: bool
    train_fraction: float
    pooling: str
    train_seconds_per_epoch: float | None = None  # the training part of an epoch


@dataclass(frozen=True)
class Estimate:
    value: float | None  # None: nothing to estimate from
    source: str
    high: float | None = None  # a range's upper end (None: a point estimate)

    @property
    def top(self) -> float | None:
        return self.value if self.high is None else self.high


def measured_members(results_dir: str, also: Iterable[str] = ()) -> list[Measured]:
    """Every finished stage-2 member under results_dir/<study>/members/, once by (key, seed)
    (the first study in name order that holds it), then those directly under each folder of
    `also` (`member.out_dir`: the members `icdtransfer train-target` trained, such as dvc
    repro's before its sweeps), keyed by their folder's name."""
    seen: dict[tuple[str, int], Measured] = {}
    for path in sorted(Path(results_dir).glob(f"*/{STORE}/*/seed*/member.json")):
        seed_dir = path.parent
        try:
            seed = int(seed_dir.name[len("seed") :])
        except ValueError:
            continue
        item = _measured(seed_dir, f"{results_dir}/{seed_dir.parents[2].name}", seed)
        if item is not None:
            seen.setdefault((item.key, item.seed), item)
    for folder in also:
        for path in sorted(Path(folder).glob("*/member.json")):
            item = _measured(path.parent, folder, None)
            if item is not None:
                seen.setdefault((item.key, item.seed), item)
    return list(seen.values())


def _measured(seed_dir: Path, study: str, seed: int | None) -> Measured | None:
    """A finished train_target member's record (None: not one, or not finished)."""
    try:
        data = json.loads((seed_dir / "member.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("stage") != "train_target":
        return None
    if not (seed_dir / MARKER).exists() and not (seed_dir / "metrics.json").exists():
        return None
    epochs = data.get("epochs") or data.get("epochs_run")
    if not epochs:
        return None
    spe = data.get("seconds_per_epoch")
    head = data.get("head") or {}
    in_store = seed is not None
    return Measured(
        study=study,
        key=seed_dir.parent.name if in_store else seed_dir.name,
        seed=seed if in_store else int(data.get("seed") or 0),
        variant=str(data.get("variant")),
        device=str(data.get("device", "")),
        seconds_per_epoch=float(spe) if spe else None,
        epochs=int(epochs),
        epoch_cap=int(data.get("epoch_cap") or epochs),
        converged=bool(data.get("converged", False)),
        train_fraction=float(data.get("train_fraction", 1.0)),
        pooling=str(head.get("pooling", "max")),
        train_seconds_per_epoch=training_seconds_per_epoch(seed_dir, data.get("train_documents")),
    )


def training_seconds_per_epoch(seed_dir: Path, documents: object) -> float | None:
    """The training part of a member's epoch: its training documents over the median
    `train_docs_per_s` of its history.json (None where either is missing)."""
    try:
        history = json.loads((seed_dir / "history.json").read_text(encoding="utf-8"))
        rates = [float(h["train_docs_per_s"]) for h in history if h.get("train_docs_per_s")]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not rates or not isinstance(documents, int | float) or documents <= 0:
        return None
    return float(documents) / statistics.median(rates)


def scaled_seconds(m: Measured, fraction: float) -> float:
    """m's seconds per epoch at another train_fraction: its training part scaled, the rest
    (validation, the epoch's bookkeeping) kept; all of it scaled where the part is unknown."""
    spe = float(m.seconds_per_epoch or 0.0)
    part = m.train_seconds_per_epoch
    if part is None or part > spe:
        return spe * fraction / m.train_fraction
    return spe - part + part * fraction / m.train_fraction


def this_device(study: Study) -> str:
    """The device a trial of the study trains on here, as member.json names it."""
    import torch

    from icdtransfer.train.hardware import describe_device

    if study.resources.gpu > 0 and torch.cuda.is_available():
        return describe_device(torch.device("cuda"), 1)
    return describe_device(torch.device("cpu"))


def where(items: Iterable[Measured]) -> str:
    """`N members in results/<study>`, or `N members: n in results/<a>, m in results/<b>`."""
    counts: dict[str, int] = {}
    for m in items:
        counts[m.study] = counts.get(m.study, 0) + 1
    total = sum(counts.values())
    noun = f"{total} member{'s' if total != 1 else ''}"
    if len(counts) == 1:
        return f"{noun} in {next(iter(counts))}"
    return f"{noun}: " + ", ".join(f"{n} in {s}" for s, n in sorted(counts.items()))


def epochs_estimate(measured: list[Measured], variant: str, fraction: float, cap: int) -> Estimate:
    usable = [m for m in measured if m.variant == variant and (m.epoch_cap == cap or m.converged)]
    same = [m for m in usable if m.train_fraction == fraction]
    chosen = same or usable
    if not chosen:
        epochs = f"{cap} epoch{'s' if cap != 1 else ''}"
        others = [
            m
            for m in measured
            if m.train_fraction == fraction and (m.epoch_cap == cap or m.converged)
        ]
        if others:  # another variant's epochs, up to the cap: variants learn at their own pace
            value = min(float(statistics.median(m.epochs for m in others)), float(cap))
            return Estimate(
                value,
                f"measured: {where(others)} of other variants (median epochs), up to the cap"
                f" ({epochs}): no finished {variant} member measured",
                float(cap),
            )
        why = f"an upper bound: no finished {variant} member measured"
        return Estimate(float(cap), f"cap ({epochs}, {why})")
    value = min(float(statistics.median(m.epochs for m in chosen)), float(cap))
    if same:
        return Estimate(value, f"measured: {where(chosen)} (median epochs)")
    steps = min(
        float(statistics.median(m.epochs * m.train_fraction / fraction for m in chosen)),
        float(cap),
    )
    low, high = min(value, steps), max(value, steps)
    return Estimate(
        low,
        f"measured: {where(chosen)} at other train_fractions: {low:.0f}-{high:.0f} epochs"
        " (their median epochs to the same optimizer steps, at most the cap)",
        high,
    )


def seconds_estimate(
    measured: list[Measured], device: str, variant: str, fraction: float, pooling: str
) -> Estimate:
    here = [m for m in measured if m.device == device and m.seconds_per_epoch]
    tiers: list[tuple[str, Callable[[Measured], bool]]] = [
        ("same variant", lambda m: m.variant == variant and m.pooling == pooling),
        ("same variant, other pooling", lambda m: m.variant == variant),
        ("other variants", lambda m: m.pooling == pooling),
        ("other variants and pooling", lambda m: True),
    ]
    for name, keep in tiers:
        chosen = [m for m in here if keep(m)]
        if not chosen:
            continue
        same = [m for m in chosen if m.train_fraction == fraction]
        if same:
            value = statistics.median(m.seconds_per_epoch for m in same)  # type: ignore[misc]
            return Estimate(value, f"measured: {where(same)} (median, {name}, {device})")
        value = statistics.median(scaled_seconds(m, fraction) for m in chosen)
        return Estimate(
            value,
            f"measured: {where(chosen)} (median, {name}, {device}, its training part scaled"
            f" to train_fraction {fraction:g})",
        )
    return Estimate(None, f"no measured epoch time on {device}: run one member first")
