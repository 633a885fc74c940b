"""Study files (studies/*.yaml): what a sweep searches, how it is judged, what it may use.

Format (documented in studies/README.md):

    name: table2
    kind: grid                  # grid | optuna
    metric: val_macro_f         # what the search optimises (validation, tuned threshold)
    mode: max                   # max | min
    num_samples: 1              # grid: repeats of the whole grid; optuna: trials
    scheduler: none             # none | asha (early-stops trials on intermediate results)
    max_concurrent: 2
    max_failures: 1             # retries of a trial that raises
    resources: {cpu: 1, gpu: 0}
    seeds: [1, 2, 3, 4, 5, 6]   # member i of an ensemble uses seeds[i]
    every_seed: true            # each trial also trains its configuration's other seeds
    search_seed: 0              # Optuna's sampler seed
    space:                      # variant (required), adaptation_size, word_dropout,
      variant: [scratch, tune_all]      #   ensemble_size, learning_rate, epochs, pooling
      ensemble_size: [1, 3]             # a list: grid values (grid) or a choice (optuna)
      word_dropout: {uniform: [0.0, 0.5]}   # optuna only: uniform, loguniform, int
      adaptation_size: {value: 256}     # fixed
    train: {max_tokens: 1000}   # fixed head/train_target overrides for every member
    points:                     # optuna only: configurations evaluated first, in order
      - {variant: scratch, ensemble_size: 1}   #   (Optuna's enqueued trials; a designed
                                               #   ablation lists every point, num_samples
                                               #   = the number of points)
    convergence:                # the rule every member trains by (docs/DESIGN.md section 4)
      patience: 3               #   stop after 3 epochs without a better validation macro-F
      max_epochs: 40            #   a safety cap; a member that reaches it did not converge
      min_delta: 0.0            #   a better macro-F beats the best by more than this
      min_epochs: 5             #   early stopping may fire from epoch 5 on (not on a
                                #   plateau before learning starts)
      lr_patience: 3            #   learning rate x lr_factor after 3 epochs without a
      lr_factor: 0.5            #   better validation macro-F, at most lr_reductions
      lr_reductions: 3          #   times; early stopping waits for the last (0: off)
      weight_average: 0.99      #   validate and keep an average of the weights (0: off)
      criterion: val_macro_f_best  # the curve watched: macro-F at its best threshold
      smoothing: 3              #   ... as the mean of the last 3 epochs

Like config.py, an unknown key, a wrong type or a value outside its range is an error that
names the key; `train` overrides and searched values are checked against the ranges of the
params keys they replace (model and train_target).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from icdtransfer.config import (
    ConfigError,
    Count,
    HeadConfig,
    Range,
    Seed,
    Size,
    TrainTargetConfig,
    build,
    check_field,
    read_yaml,
)
from icdtransfer.model.transfer import VARIANTS

DIMENSIONS = (
    "variant",
    "adaptation_size",
    "word_dropout",
    "ensemble_size",
    "learning_rate",
    "epochs",
    "pooling",
    "train_fraction",
)
TRAIN_KEYS = (
    "epochs",
    "patience",
    "min_delta",
    "min_epochs",
    "lr_patience",
    "lr_factor",
    "lr_reductions",
    "weight_average",
    "criterion",
    "smoothing",
    "learning_rate",
    "batch_size",
    "optimizer",
    "precision",
    "max_tokens",
    "dropout",
    "word_dropout",
    "adaptation_size",
    "pooling",
    "train_fraction",
)
DISTRIBUTIONS = ("uniform", "loguniform", "int", "value")


@dataclass
class Resources:
    cpu: Annotated[float, Range(ge=0)] = 1.0
    gpu: Annotated[float, Range(ge=0)] = 0.0


@dataclass
class Convergence:
    """The rule every member of a study trains by: early stopping after `patience` epochs
    without a better validation macro-F (better: by more than `min_delta`), from epoch
    `min_epochs` on. `max_epochs` is a safety cap, not a budget: a member that reaches it has
    not converged, and says so (member.json, members.parquet, trials.parquet). Every variant
    gets the same rule, not the same number of epochs."""

    patience: Size
    max_epochs: Size
    min_delta: Annotated[float, Range(ge=0, lt=1)] = 0.0
    min_epochs: Size = 1
    lr_patience: Count = 0
    lr_factor: Annotated[float, Range(gt=0, lt=1)] = 0.5
    lr_reductions: Count = 0
    weight_average: Annotated[float, Range(ge=0, lt=1)] = 0.0
    criterion: Literal["val_macro_f", "val_macro_f_best"] = "val_macro_f"
    smoothing: Size = 1


@dataclass
class Study:
    name: str
    kind: Literal["grid", "optuna"]
    space: dict[str, Any]
    metric: str = "val_macro_f"
    mode: Literal["max", "min"] = "max"
    num_samples: Size = 1
    scheduler: Literal["none", "asha"] = "none"
    max_concurrent: Size = 2
    max_failures: Count = 1
    resources: Resources = field(default_factory=Resources)
    seeds: list[Seed] = field(default_factory=lambda: [1, 2, 3])
    # every trial trains (or reuses) a member for every seed, not only its ensemble's, so each
    # configuration is reported over all seeds and on each half of them (report/verdicts.py;
    # the shipped table2 and ablation studies set it, with 6 seeds)
    every_seed: bool = False
    search_seed: Seed = 0
    train: dict[str, Any] = field(default_factory=dict)
    convergence: Convergence | None = None
    # optuna only: configurations (every searched dimension) evaluated first, in order
    points: list[dict[str, Any]] = field(default_factory=list)

    def epoch_cap(self, default: int) -> int:
        """The most epochs any member of the study may run (ASHA's max_t)."""
        spec = self.space.get("epochs")
        if spec is None:
            return int(self.train.get("epochs", default))
        values = spec if isinstance(spec, list) else next(iter(spec.values()))
        return int(max(values)) if isinstance(values, list) else int(values)

    @property
    def max_ensemble(self) -> int:
        spec = self.space.get("ensemble_size", [1])
        if isinstance(spec, dict):
            spec = next(iter(spec.values()))
        return max(spec) if isinstance(spec, list) else int(spec)


def load_study(path: str | Path) -> Study:
    """Read and validate one study file."""
    raw = read_yaml(path, "study file")
    study = build(Study, raw if raw is not None else {}, where=str(path))
    validate(study, str(path))
    return study


def validate(study: Study, where: str) -> None:
    if not study.metric.startswith("val_"):
        raise ConfigError(
            f"{where}: metric {study.metric!r} is not a validation metric (val_*): a search"
            " that selects on the test split reports an optimistic test score"
        )
    if not study.space:
        raise ConfigError(f"{where}: space must name at least one dimension")
    for key, spec in study.space.items():
        name = f"space.{key}"
        if key not in DIMENSIONS:
            raise ConfigError(f"{where}: unknown key {name} (dimensions: {', '.join(DIMENSIONS)})")
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"{where}: {name} is an empty list")
            values = spec
        elif isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS:
            kind, arg = next(iter(spec.items()))
            if study.kind == "grid" and kind != "value":
                raise ConfigError(
                    f"{where}: {name}: a grid study takes a list or a value, not {kind}"
                )
            if kind != "value" and not (isinstance(arg, list) and len(arg) == 2):
                raise ConfigError(f"{where}: {name}.{kind} must be [low, high]")
            values = [arg] if kind == "value" else arg
        else:
            raise ConfigError(
                f"{where}: {name} must be a list or one of {{{', '.join(DISTRIBUTIONS)}: ...}}"
            )
        if key == "variant" and not set(values) <= set(VARIANTS):
            raise ConfigError(
                f"{where}: {name}: unknown variant in {values} (known: {', '.join(VARIANTS)})"
            )
        if key == "ensemble_size" and any(not isinstance(v, int) or v < 1 for v in values):
            raise ConfigError(f"{where}: {name} values must be integers >= 1")
        if key not in ("variant", "ensemble_size"):
            _check_values(spec, key, where, name)
    if study.max_ensemble > len(study.seeds):
        raise ConfigError(
            f"{where}: ensemble_size up to {study.max_ensemble} needs as many "
            f"seeds, got {len(study.seeds)}"
        )
    unknown = sorted(set(study.train) - set(TRAIN_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key train.{unknown[0]} (known: {', '.join(TRAIN_KEYS)})"
        )
    for key, value in study.train.items():
        study.train[key] = check_field(_section(key), key, value, where, f"train.{key}")
    if "variant" not in study.space:
        raise ConfigError(f"{where}: space.variant is missing: which variant(s) members train")
    if study.convergence is not None:
        _apply_convergence(study, study.convergence, where)
    _check_points(study, where)


def _check_points(study: Study, where: str) -> None:
    """Points name exactly the searched dimensions (not the fixed ones), with values the
    space allows: a list's members, or a number inside a distribution's range."""
    if study.points and study.kind != "optuna":
        raise ConfigError(f"{where}: points: only an optuna study takes points")
    if len(study.points) > study.num_samples:
        raise ConfigError(
            f"{where}: {len(study.points)} points but num_samples {study.num_samples}: "
            "every point is one trial"
        )
    searched = {k for k, s in study.space.items() if not (isinstance(s, dict) and "value" in s)}
    for i, point in enumerate(study.points):
        name = f"points[{i}]"
        if not isinstance(point, dict) or set(point) != searched:
            got = sorted(point) if isinstance(point, dict) else point
            raise ConfigError(
                f"{where}: {name} must set exactly the searched dimensions "
                f"{sorted(searched)}, got {got}"
            )
        for key, value in point.items():
            spec = study.space[key]
            if isinstance(spec, list):
                ok = value in spec
            else:
                kind, (low, high) = next(iter(spec.items()))
                ok = isinstance(value, int | float) and low <= value <= high
            if not ok:
                raise ConfigError(f"{where}: {name}.{key} = {value!r} is outside space.{key}")


def _apply_convergence(study: Study, rule: Convergence, where: str) -> None:
    """The convergence policy is the one place a study sets patience and the epoch cap."""
    for clash in (
        "train.epochs",
        "train.patience",
        "train.min_delta",
        "train.min_epochs",
        "train.lr_patience",
        "train.lr_factor",
        "train.lr_reductions",
        "train.weight_average",
        "train.criterion",
        "train.smoothing",
        "space.epochs",
    ):
        section, key = clash.split(".")
        if key in getattr(study, section):
            raise ConfigError(
                f"{where}: {clash} and convergence both set the training rule; keep "
                "convergence (patience, max_epochs, min_delta, min_epochs), so every member "
                "trains by one rule"
            )
    if rule.max_epochs <= rule.patience:
        raise ConfigError(
            f"{where}: convergence.max_epochs ({rule.max_epochs}) must be greater than "
            f"convergence.patience ({rule.patience}): a member converges only after "
            "`patience` epochs without improvement"
        )
    if rule.min_epochs > rule.max_epochs:
        raise ConfigError(
            f"{where}: convergence.min_epochs ({rule.min_epochs}) must not exceed "
            f"convergence.max_epochs ({rule.max_epochs})"
        )
    study.train["epochs"] = rule.max_epochs
    study.train["patience"] = rule.patience
    study.train["min_delta"] = rule.min_delta
    study.train["min_epochs"] = rule.min_epochs
    study.train["lr_patience"] = rule.lr_patience
    study.train["lr_factor"] = rule.lr_factor
    study.train["lr_reductions"] = rule.lr_reductions
    study.train["weight_average"] = rule.weight_average
    study.train["criterion"] = rule.criterion
    study.train["smoothing"] = rule.smoothing


def _section(key: str) -> type:
    """The params section (dataclass) a study's train key or searched dimension overrides."""
    return HeadConfig if key in HeadConfig.__dataclass_fields__ else TrainTargetConfig


def _check_values(spec: list | dict, key: str, where: str, name: str) -> None:
    """Each grid value, fixed value or distribution bound of a dimension, against the range
    of the params key it sets (word_dropout in [0, 1), epochs >= 1, ...)."""
    if isinstance(spec, list):
        named = [(f"{name}[{i}]", v) for i, v in enumerate(spec)]
    else:
        kind, arg = next(iter(spec.items()))
        named = (
            [(f"{name}.value", arg)]
            if kind == "value"
            else [(f"{name}.{kind}[{i}]", v) for i, v in enumerate(arg)]
        )
    for label, value in named:
        check_field(_section(key), key, value, where, label)


def tune_space(study: Study) -> dict[str, Any]:
    """The Ray Tune search space of a study (grid_search lists, or Optuna-ready domains)."""
    from ray import tune

    space: dict[str, Any] = {}
    for key, spec in study.space.items():
        if isinstance(spec, list):
            space[key] = tune.grid_search(spec) if study.kind == "grid" else tune.choice(spec)
            continue
        kind, arg = next(iter(spec.items()))
        if kind == "value":
            space[key] = arg
        elif kind == "uniform":
            space[key] = tune.uniform(*arg)
        elif kind == "loguniform":
            space[key] = tune.loguniform(*arg)
        else:
            space[key] = tune.randint(arg[0], arg[1] + 1)
    return space
