"""The files the stages hand each other, defined once (docs/DESIGN.md section 6).

Train, baseline, sweep, report and predict read and write these through this module only:

* the member directory: file names, probabilities, JSON files, the ensemble spec;
* `Metrics`, the metrics.json schema, with the two threshold kinds `ThresholdKind`;
* `ModelMeta`, what model.pt says about the network it holds (model_meta.py);
* `MemberInfo`, member.json, with the training outcome (`Training`: converged or not);
* the trial and member rows of a sweep (trials.parquet, members.parquet: rows.py);
* `CorpusLike`, what the batching code needs of a corpus;
* `average_members`, the seed ensemble.

No torch here: reports and the LR baseline use it without loading a network.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from icdtransfer.data.errors import InputError

# --- thresholds ------------------------------------------------------------------------------

ThresholdKind = Literal["tuned", "fixed"]
THRESHOLD_KINDS: tuple[ThresholdKind, ...] = ("tuned", "fixed")
FIXED_THRESHOLD = 0.5  # the paper states none; 0.5 is the usual reading
TUNED_ON = "validation micro_f"
THRESHOLD_TEXT: dict[ThresholdKind, str] = {
    "tuned": "one global threshold per model, tuned for micro-F on validation",
    "fixed": f"fixed {FIXED_THRESHOLD} (the paper states no threshold)",
}

# --- what the batching code reads --------------------------------------------------------------


class CorpusLike(Protocol):
    """A prepared corpus as the batching code sees it: `Corpus`, the notes `predict` encodes,
    the benches' synthetic notes. `labels` is None where nothing is labelled."""

    @property
    def offsets(self) -> np.ndarray: ...  # int64, n_docs + 1

    @property
    def labels(self) -> sp.csr_matrix | None: ...  # n_docs x n_labels

    def document(self, i: int) -> np.ndarray: ...  # token ids of document i


# --- the member directory ----------------------------------------------------------------------

MODEL_FILE = "model.pt"  # a CNN: state dict + ModelMeta (torch, weights_only)
VECTORIZER_FILE = "vectorizer.npz"  # the baselines' tf-idf vocabulary and idf (no pickle)
LR_FILE = "lr.npz"  # the LR baseline: per-code coefficients and intercepts (no pickle)
RANKER_FILE = "ranker.txt"  # LR + L2R (+ NERC): LightGBM's ranker (baseline/l2r.py's files)
PICKLED_LR_FILE = "model.joblib"  # an older version's pickled LR: never loaded
VOCAB_FILE = "vocab.tsv"
LABELS_FILE = "labels.tsv"  # index, code, train_frequency (no descriptions)
PROBS_FILES = {"validation": "probs_validation.npy", "test": "probs_test.npy"}  # float16
METRICS_FILE = "metrics.json"  # Metrics
HISTORY_FILE = "history.json"  # one record per epoch (train loss, validation scores)
INFO_FILE = "member.json"  # MemberInfo
PREDICTIONS_FILE = "predictions.parquet"  # ids, codes, probabilities (evaluate/predictions.py)
ENSEMBLE_FILE = "ensemble.json"  # an ensemble directory: its members' copies under members/
MEMBER_FILES = (
    MODEL_FILE,
    VOCAB_FILE,
    LABELS_FILE,
    *PROBS_FILES.values(),
    METRICS_FILE,
    HISTORY_FILE,
    INFO_FILE,
    PREDICTIONS_FILE,
)


def member_name(variant: str, seed: int) -> str:
    """A stage-2 member's folder: `<variant>-seed<seed>`."""
    return f"{variant}-seed{seed}"


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_probs(folder: Path, validation: np.ndarray, test: np.ndarray) -> None:
    """Probabilities (documents in corpus order x labels), stored as float16."""
    np.save(folder / PROBS_FILES["validation"], validation.astype(np.float16))
    np.save(folder / PROBS_FILES["test"], test.astype(np.float16))


def read_probs(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(validation, test) probabilities as float32."""
    return (
        np.load(folder / PROBS_FILES["validation"]).astype(np.float32),
        np.load(folder / PROBS_FILES["test"]).astype(np.float32),
    )


HISTORY_COLUMNS = ("epoch", "train_loss", "val_macro_f")  # what reports read of history.json


def read_history(folder: Path) -> pd.DataFrame:
    """A member's history.json as one row per epoch (train/state.py's EpochRecord fields), in
    epoch order; a file without the learning-curve columns is an error naming it."""
    path = folder / HISTORY_FILE
    frame = pd.DataFrame(read_json(path))
    missing = [c for c in HISTORY_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(path, None, f"epoch records lack {', '.join(missing)}")
    return frame.sort_values("epoch", kind="stable").reset_index(drop=True)


def copy_vocab_and_codes(corpus_dir: Path, out: Path) -> None:
    """The vocabulary, and the label table without its description column (results hold
    ids, codes and numbers only)."""
    shutil.copyfile(corpus_dir / VOCAB_FILE, out / VOCAB_FILE)
    labels = read_codes_table(corpus_dir / LABELS_FILE)
    labels[["index", "code", "train_frequency"]].to_csv(out / LABELS_FILE, sep="\t", index=False)


def read_codes_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype={"code": str}, keep_default_na=False)


def average_members(members: Sequence[Sequence[np.ndarray]]) -> tuple[np.ndarray, ...]:
    """The seed ensemble (the paper's AVG): split by split, the mean of the members'
    probabilities in float32. Each member is a sequence of arrays, one per split, in the same
    order for every member; members must score the same documents and labels."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    shapes = [tuple(np.shape(a) for a in m) for m in members]
    if len(set(shapes)) > 1:
        raise ValueError(
            f"ensemble members disagree on their probability shapes {sorted(set(shapes))}: "
            "members must come from the same corpus"
        )
    return tuple(
        np.mean(np.stack([np.asarray(m[i], dtype=np.float32) for m in members]), axis=0)
        for i in range(len(members[0]))
    )


# --- metrics.json ------------------------------------------------------------------------------


@dataclass
class Scores:
    """Micro and macro P/R/F of one prediction matrix (conventions: docs/DESIGN.md section 5)."""

    micro_p: float
    micro_r: float
    micro_f: float
    macro_p: float
    macro_r: float
    macro_f: float
    macro_f_all_labels: float


@dataclass
class ThresholdScores(Scores):
    """Test scores at one threshold, with macro-F per label-frequency decile."""

    threshold: float = FIXED_THRESHOLD
    decile_macro_f: list[float | None] = field(default_factory=list)
    tuned_on: str | None = None  # set for the tuned threshold


@dataclass
class Metrics:
    """metrics.json of a member, an ensemble or the baseline: test results at both threshold
    kinds, ranking measures, and validation scores at both kinds."""

    macro_convention: str
    decile_convention: str
    documents: int
    labels: int
    labels_with_positives: int
    fixed: ThresholdScores
    tuned: ThresholdScores
    p_at_5: float
    p_at_8: float
    p_at_15: float
    micro_auc: float | None
    macro_auc: float | None
    validation: dict[ThresholdKind, Scores]
    ensemble_size: int | None = None
    split: str = "test"

    def at(self, kind: ThresholdKind) -> ThresholdScores:
        return self.tuned if kind == "tuned" else self.fixed

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "macro_convention": self.macro_convention,
            "decile_convention": self.decile_convention,
            "split": self.split,
            "documents": self.documents,
            "labels": self.labels,
            "labels_with_positives": self.labels_with_positives,
        }
        for kind in ("fixed", "tuned"):
            scores = dataclasses.asdict(self.at(kind))
            tuned_on = scores.pop("tuned_on")
            head = {"threshold": scores.pop("threshold")}
            if tuned_on is not None:
                head["tuned_on"] = tuned_on
            out[kind] = {**head, **scores}
        out.update(
            p_at_5=self.p_at_5,
            p_at_8=self.p_at_8,
            p_at_15=self.p_at_15,
            micro_auc=self.micro_auc,
            macro_auc=self.macro_auc,
            validation={k: dataclasses.asdict(self.validation[k]) for k in ("fixed", "tuned")},
        )
        if self.ensemble_size is not None:
            out["ensemble_size"] = self.ensemble_size
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Metrics:
        """Read metrics.json; files written before the threshold kinds were named one way
        (`fixed_0.5`) read the same."""
        data = {**data}
        if "fixed_0.5" in data:
            data["fixed"] = data.pop("fixed_0.5")
            data["validation"] = {
                ("fixed" if k == "fixed_0.5" else k): v for k, v in data["validation"].items()
            }
        return cls(
            **{k: v for k, v in data.items() if k not in ("fixed", "tuned", "validation")},
            fixed=ThresholdScores(**data["fixed"]),
            tuned=ThresholdScores(**data["tuned"]),
            validation={k: Scores(**v) for k, v in data["validation"].items()},
        )

    def write(self, folder: Path) -> None:
        write_json(folder / METRICS_FILE, self.to_json())

    @classmethod
    def read(cls, folder: Path) -> Metrics:
        return cls.from_json(read_json(folder / METRICS_FILE))


# --- member.json -------------------------------------------------------------------------------

StopReason = Literal["early_stopping", "epoch_cap"]


@dataclass
class Training:
    """How a CNN member's training ended (docs/DESIGN.md section 4, convergence rule): it
    converged when early stopping fired, `patience` epochs in a row without a better
    validation macro-F; a run that reached the epoch cap first did not (the cap is a safety
    limit, not a budget)."""

    converged: bool
    stop_reason: StopReason
    best_epoch: int
    epochs_run: int
    epoch_cap: int
    patience: int
    validation_curve: list[float]  # the criterion per epoch (history.json has the rest)
    min_delta: float = 0.0  # the least gain that counted as an improvement
    min_epochs: int = 1  # early stopping could fire from this epoch on
    lr_reductions: int = 0  # learning-rate reductions on plateau before it stopped
    # the validation curve early stopping watched (validation_curve is that curve)
    criterion: str = "val_macro_f"
    # a convergence audit run (train/audit.py): where the rule stopped, and how much better
    # the criterion got when training went on with the audit's patience
    audit_stop_epoch: int | None = None
    audit_gain: float | None = None
    # what the convergence audit reads (train/audit.py): the loss curves beside macro-F
    validation_loss_curve: list[float | None] = field(default_factory=list)
    train_loss_curve: list[float] = field(default_factory=list)


@dataclass
class Compute:
    """What a member cost (docs/DESIGN.md, "Cost accounting"): CPU seconds of the process that
    trained and evaluated it, wall seconds on CUDA devices x their number (0 on the CPU), and
    the device, precision and epochs it ran with; flattened into member.json."""

    cpu_seconds: float
    gpu_seconds: float
    device: str  # e.g. "cpu: Intel(R) Xeon(R) ... (avx512_bf16)" or "cuda: NVIDIA H200 x1"
    precision: str = ""
    epochs: int = 0
    seconds_per_epoch: float | None = None
    threads: int = 1  # torch's intra-op threads


@dataclass
class MemberInfo:
    """member.json: what was trained, how, on what, and how its training ended."""

    stage: Literal["pretrain", "train_target", "baseline"]
    tokenizer_numbers: str
    train_seconds: float
    settings: dict[str, Any]
    corpus: str | None = None
    variant: str | None = None
    paper: str | None = None
    seed: int | None = None
    training: Training | None = None  # CNN members; flattened into member.json
    encoder: dict[str, Any] | None = None
    head: dict[str, Any] | None = None
    pretrained: str | None = None
    workers: int | None = None  # Ray Train workers of a distributed stage-1 run
    ray_run: str | None = None
    method: str | None = None  # a baseline: lr, lr_l2r or lr_l2r_nerc
    model: str | None = None  # a baseline's description
    features: int | list[str] | None = None  # LR: its feature count; L2R: the ranker's features
    details: dict[str, Any] = field(default_factory=dict)  # a method's own diagnostics, flattened
    compute: Compute | None = None  # flattened; None in member.json files written before it

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("training", "compute") and value is not None:
                out.update(dataclasses.asdict(value))
            elif f.name == "details":
                out.update(value or {})
            elif value is not None:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemberInfo:
        names = {f.name for f in dataclasses.fields(cls)} - {"training", "details", "compute"}
        training_names = {f.name for f in dataclasses.fields(Training)}
        compute_names = {f.name for f in dataclasses.fields(Compute)}
        compute = None
        if "cpu_seconds" in data:  # members written before cost accounting have none
            compute = Compute(**{k: data[k] for k in compute_names if k in data})
        required = {
            f.name for f in dataclasses.fields(Training) if f.default is dataclasses.MISSING
        }
        training = None
        if required <= set(data):  # members written before min_delta/min_epochs: defaults
            training = Training(**{k: data[k] for k in training_names if k in data})
        known = {k: v for k, v in data.items() if k in names}
        if not isinstance(known.get("model"), str | None):
            del known["model"]  # members written before the encoder/head split
        skip = names | training_names | compute_names | {"model"}
        details = {k: v for k, v in data.items() if k not in skip}
        return cls(**known, training=training, details=details, compute=compute)

    def write(self, folder: Path) -> None:
        write_json(folder / INFO_FILE, self.to_json())

    @classmethod
    def read(cls, folder: Path) -> MemberInfo:
        return cls.from_json(read_json(folder / INFO_FILE))
