"""params.yaml -> typed dataclasses: unknown keys and wrong types name the key."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from icdtransfer.config import ConfigError, Params, Range, load_params

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_load_and_match_the_dataclass_defaults() -> None:
    assert load_params(REPO / "params.yaml") == Params()


def test_overrides_are_parsed_as_yaml() -> None:
    params = load_params(
        REPO / "params.yaml",
        [
            "target.min_count=50",
            "target.truncate_depth=null",
            "target.categories=[A, B]",
            "source.holdout=0.25",
            "synthesize.codes_per_note=7",
        ],
    )
    assert params.target.min_count == 50
    assert params.target.truncate_depth is None
    assert params.target.categories == ["A", "B"]
    assert params.source.holdout == 0.25
    assert params.synthesize.codes_per_note == 7.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("target.min_cont=3", "unknown key target.min_cont"),
        ("nosection.x=1", "unknown key nosection"),
        ("target.min_count=many", "target.min_count must be int, got 'many'"),
        ("target.min_count=true", "target.min_count must be int, got True"),
        ("target.code_system=icd11", "target.code_system must be one of ['icd9', 'icd10', 'none']"),
        ("target.categories=Discharge", "target.categories must be a list"),
        ("target.split_files={validation: v.txt}", "missing key target.split_files.test"),
        ("source.holdout=[1]", "source.holdout must be float"),
        ("target", "expected section.key=value"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml", [override])
    assert message in str(err.value)


def test_unknown_key_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("target:\n  min_count: 5\n  sead: 3\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: unknown key target\.sead"):
        load_params(path)
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")
    path.write_text("target: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path)


def test_paper_preset_has_the_papers_hyperparameters() -> None:
    p = load_params(REPO / "presets" / "paper.yaml")
    e, h = p.encoder, p.head
    assert (e.embedding_dim, e.filters, e.widths, h.adaptation_size) == (300, 300, [3, 4, 5], 512)
    assert (h.word_dropout, h.dropout, h.max_tokens) == (0.3, 0.5, 6000)
    for stage in (p.pretrain, p.train_target):
        assert stage.optimizer == "adadelta" and stage.batch_size == 50
    assert (p.target.min_count, p.target.validation_size, p.target.test_size) == (50, 2000, 3000)
    assert p.synthesize.scale == "paper"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # found in use: an untrained member written with exit 0, notes cut to one token
        ("train_target.patience=0", "train_target.patience must be >= 1, got 0"),
        ("head.word_dropout=1.0", "head.word_dropout must be in [0, 1), got 1.0"),
        ("pretrain.batch_size=0", "pretrain.batch_size must be >= 1, got 0"),
        ("source.holdout=1.5", "source.holdout must be in [0, 1), got 1.5"),
        ("head.dropout=-0.1", "head.dropout must be in [0, 1), got -0.1"),
        ("encoder.widths=[3, 0]", "encoder.widths[1] must be >= 1, got 0"),
        ("encoder.widths=[]", "encoder.widths must not be empty"),
        ("train_target.learning_rate=0", "train_target.learning_rate must be > 0, got 0"),
        ("train_target.epochs=0", "train_target.epochs must be >= 1, got 0"),
        ("member.seed=-1", "member.seed must be >= 0, got -1"),
        ("target.truncate_depth=-1", "target.truncate_depth must be >= 0, got -1"),
        ("target.validation_size=0", "target.validation_size must be >= 1, got 0"),
        ("synthesize.addendum_rate=1.5", "synthesize.addendum_rate must be in [0, 1], got 1.5"),
        ("synthesize.codes_per_note=0.5", "synthesize.codes_per_note must be >= 1, got 0.5"),
        ("baseline.C=0", "baseline.C must be > 0, got 0"),
        ("ray.num_cpus=0", "ray.num_cpus must be >= 1, got 0"),
        ("report.bootstrap=0", "report.bootstrap must be >= 1, got 0"),
        ("source.workers=-2", "source.workers must be >= 0, got -2"),
    ],
)
def test_values_out_of_range_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml", [override])
    assert message in str(err.value)


def test_values_at_the_edge_of_their_range_are_accepted() -> None:
    params = load_params(
        REPO / "params.yaml",
        [
            "head.word_dropout=0",
            "head.dropout=0.99",
            "source.holdout=0",
            "train_target.patience=1",
            "synthesize.addendum_rate=1",
            "ray.num_cpus=null",
            "target.truncate_depth=0",
        ],
    )
    assert params.head.word_dropout == 0.0 and params.train_target.patience == 1
    assert params.ray.num_cpus is None and params.synthesize.addendum_rate == 1.0


def _unranged_numbers(cls: type, prefix: str = "") -> list[str]:
    """Keys of int/float fields (alone, in a list or beside None) that declare no Range."""
    out = []
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        if dataclasses.is_dataclass(hint):
            out += _unranged_numbers(hint, f"{prefix}{name}.")
        elif _bare_number(hint):
            out.append(prefix + name)
    return out


def _bare_number(hint: object) -> bool:
    if hint in (int, float):
        return True
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Annotated:
        return not any(isinstance(a, Range) for a in args[1:]) and _bare_number(args[0])
    return any(_bare_number(a) for a in args)


def test_every_numeric_knob_has_a_range() -> None:
    assert _bare_number(int) and _bare_number(list[float]) and _bare_number(int | None)
    assert _unranged_numbers(Params) == []


def test_a_preset_overrides_only_its_keys_over_the_file_it_extends(tmp_path: Path) -> None:
    paper = load_params(REPO / "presets" / "paper.yaml")
    defaults = load_params(REPO / "params.yaml")
    # keys the overlay does not name come from params.yaml, in a section it does override too
    assert paper.head.word_dropout == defaults.head.word_dropout
    assert paper.pretrain.num_workers == defaults.pretrain.num_workers
    assert paper.train_target.precision == defaults.train_target.precision
    assert paper.source == defaults.source and paper.tokenizer == defaults.tokenizer
    assert paper.pipeline.variants == defaults.pipeline.variants
    assert paper.pipeline.studies == ["table2_paper"] != defaults.pipeline.studies
    (tmp_path / "base.yaml").write_text("target:\n  min_count: 7\n  seed: 3\n")
    (tmp_path / "over.yaml").write_text("extends: base.yaml\ntarget:\n  min_count: 9\n")
    over = load_params(tmp_path / "over.yaml", ["target.seed=4"])
    assert (over.target.min_count, over.target.seed) == (9, 4)
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_params(tmp_path / "loop.yaml")
    (tmp_path / "typo.yaml").write_text("extends: base.yaml\ntarget:\n  min_cont: 9\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown key target\.min_cont"):
        load_params(tmp_path / "typo.yaml")
