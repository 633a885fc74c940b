"""params.yaml -> typed dataclasses: unknown keys and wrong types name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from icdtransfer.config import ConfigError, Params, load_params

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
    m = p.model
    assert (m.embedding_dim, m.filters, m.widths, m.adaptation_size) == (300, 300, [3, 4, 5], 512)
    assert (m.word_dropout, m.dropout, m.max_tokens) == (0.3, 0.5, 6000)
    for stage in (p.pretrain, p.train_target):
        assert stage.optimizer == "adadelta" and stage.batch_size == 50
    assert (p.target.min_count, p.target.validation_size, p.target.test_size) == (50, 2000, 3000)
    assert p.synthesize.scale == "paper"
