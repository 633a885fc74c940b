"""The typed artifacts: files round-trip, older files still read, the ensemble mean."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from icdtransfer.artifacts import MemberInfo, Metrics, Training, average_members
from icdtransfer.evaluate.metrics import evaluate
from icdtransfer.model_meta import EncoderShape, ModelMeta
from icdtransfer.rows import metric_columns, read_trials


@pytest.fixture
def metrics() -> Metrics:
    rng = np.random.default_rng(0)
    y = rng.random((30, 6)) < 0.3
    return evaluate(y, rng.random(y.shape), y, rng.random(y.shape), np.arange(6))


def test_metrics_round_trip_and_read_the_older_key(metrics: Metrics, tmp_path: Path) -> None:
    metrics.write(tmp_path)
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert list(stored)[6:8] == ["fixed", "tuned"] and stored["fixed"]["threshold"] == 0.5
    assert Metrics.read(tmp_path) == metrics
    old = {**stored, "fixed_0.5": stored.pop("fixed")}  # written before the kinds had one name
    old["validation"] = {"fixed_0.5": stored["validation"]["fixed"], **stored["validation"]}
    del old["validation"]["fixed"]
    assert Metrics.from_json(old) == metrics


def test_trial_columns_name_each_threshold_kind_one_way(metrics: Metrics, tmp_path) -> None:
    columns = metric_columns(metrics)
    assert columns["test_macro_f_fixed"] == metrics.fixed.macro_f
    assert columns["test_macro_f_tuned"] == metrics.tuned.macro_f
    assert columns["val_macro_f"] == metrics.validation["tuned"].macro_f
    assert not [c for c in columns if "0.5" in c]
    pd.DataFrame([{"test_micro_f_0.5": 0.4, "val_macro_f": 0.2}]).to_parquet(tmp_path / "t.pq")
    assert list(read_trials(tmp_path / "t.pq").columns) == ["test_micro_f_fixed", "val_macro_f"]


def test_model_meta_round_trips_as_the_dict_model_pt_holds() -> None:
    source = ModelMeta("source", EncoderShape(100, 8, 4, (3, 4)), 12, 0.1, 400)
    assert source.to_json() == {
        "kind": "source",
        "shape": {"vocab_size": 100, "embedding_dim": 8, "filters": 4, "widths": [3, 4]},
        "n_labels": 12,
        "dropout": 0.1,
        "max_tokens": 400,
    }
    target = ModelMeta("target", source.shape, 5, 0.5, 600, "tune_all", "EM[v] CV[v]", 16, True)
    for meta in (source, target):
        assert ModelMeta.from_json(meta.to_json()) == meta
    assert target.min_length == 4


def test_member_info_flattens_the_training_outcome(tmp_path: Path) -> None:
    training = Training(False, "epoch_cap", 2, 2, 2, 5, [0.1, 0.2])
    info = MemberInfo("train_target", "placeholder", 1.5, {"epochs": 2}, training=training)
    info.write(tmp_path)
    stored = json.loads((tmp_path / "member.json").read_text())
    assert stored["converged"] is False and stored["validation_curve"] == [0.1, 0.2]
    assert "training" not in stored and "variant" not in stored  # unset fields are left out
    assert MemberInfo.read(tmp_path) == info
    older = {"stage": "train_target", "tokenizer_numbers": "keep", "train_seconds": 1.0,
             "settings": {}, "model": {"embedding_dim": 8}, "best_epoch": 2}  # fmt: skip
    assert MemberInfo.from_json(older).training is None


def test_average_members_is_the_mean_split_by_split() -> None:
    a = (np.full((2, 3), 0.2, np.float16), np.full((4, 3), 1.0, np.float16))
    b = (np.full((2, 3), 0.4, np.float16), np.zeros((4, 3), np.float16))
    validation, test = average_members([a, b])
    assert validation.dtype == np.float32 and np.allclose(validation, 0.3, atol=1e-3)
    assert np.array_equal(test, np.full((4, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match="same corpus"):
        average_members([a, (a[0], np.zeros((5, 3)))])


def test_member_json_compute_round_trips_and_old_files_load() -> None:
    """Cost accounting: cpu_seconds/gpu_seconds/device are flattened into member.json and read
    back; a member.json written before them loads with compute None."""
    from icdtransfer.artifacts import Compute, MemberInfo

    info = MemberInfo(
        stage="train_target",
        tokenizer_numbers="placeholder",
        train_seconds=12.0,
        settings={},
        compute=Compute(12.5, 0.0, "cpu: test", "fp32", 4, 3.0, 2),
    )
    data = info.to_json()
    assert data["cpu_seconds"] == 12.5 and data["gpu_seconds"] == 0.0
    assert data["device"] == "cpu: test" and "compute" not in data
    back = MemberInfo.from_json(data)
    assert back.compute == info.compute and back.details == {}
    old = {
        k: v
        for k, v in data.items()
        if k
        not in (
            "cpu_seconds",
            "gpu_seconds",
            "device",
            "precision",
            "epochs",
            "seconds_per_epoch",
            "threads",
        )
    }
    assert MemberInfo.from_json(old).compute is None
