"""`icdtransfer predict` from a member, an ensemble and the LR baseline; bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from builders import KEYWORDS, write_jsonl
from icdtransfer.baseline.lr import train_baseline
from icdtransfer.data.errors import InputError
from icdtransfer.predict import predict
from icdtransfer.train.ensemble import build_ensemble
from icdtransfer.train.stages import train_target


@pytest.fixture(scope="module")
def models(tiny: dict, params, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    cfg = replace(tiny["train_target"], epochs=8)
    members = []
    for seed in (1, 2):
        out = root / f"scratch-{seed}"
        member = replace(tiny["member"], variant="scratch", seed=seed, checkpoint_dir=str(root))
        train_target(tiny["encoder"], tiny["head"], cfg, tiny["target"], member, str(out))
        members.append(out)
    build_ensemble(members, tiny["target"], str(root / "ensemble"))
    train_baseline(replace(params.baseline, out_dir=str(root / "lr"), min_df=1), tiny["target"])
    return {"member": members[0], "ensemble": root / "ensemble", "lr": root / "lr"}


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    return write_jsonl(
        tmp_path / "new.jsonl",
        [
            {"id": "a", "text": "w1 w2 sepsis w3 w4 w5 w6"},
            {"id": "b", "text": "w7 kidney w8 w9", "codes": ["584.9"]},  # codes are ignored
        ],
    )


@pytest.mark.parametrize("kind", ["member", "ensemble", "lr"])
def test_predict_lists_codes_with_probabilities(models, notes: Path, kind: str) -> None:
    rows = predict(models[kind], notes, top_k=3, threshold=None)
    assert [r["id"] for r in rows] == ["a", "b"]
    for row in rows:
        assert len(row["codes"]) == 3
        probs = [c["probability"] for c in row["codes"]]
        assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
        assert set(row["codes"][0]) == {"code", "probability"}
        assert set(row["predicted"]) <= set(KEYWORDS)
    if kind == "lr":  # tf-idf + LR finds the keyword codes on this toy task
        assert rows[0]["codes"][0]["code"] == "038.9"
        assert rows[1]["codes"][0]["code"] == "584.9"


def test_predict_cli_writes_jsonl_without_text(models, notes: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "icdtransfer",
            "predict",
            "--model",
            str(models["ensemble"]),
            "--input",
            str(notes),
            "--output",
            str(out),
            "--top-k",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and "text" not in rows[0]
    assert "sepsis" not in out.read_text() and "sepsis" not in done.stderr


def test_predict_bad_input(models, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        predict(models["member"], tmp_path / "missing.jsonl", 3, None)
    empty = write_jsonl(tmp_path / "e.jsonl", [{"id": "x", "text": "  "}])
    with pytest.raises(InputError, match="line 1: empty text"):
        predict(models["member"], empty, 3, None)
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"id": "x", "text": "w1"}\n{"id": 2, "text": \n')
    with pytest.raises(InputError, match="line 2: not valid JSON"):
        predict(models["member"], broken, 3, None)
    no_text = write_jsonl(tmp_path / "n.jsonl", [{"id": "x"}])
    with pytest.raises(InputError, match="record has no 'text' field"):
        predict(models["member"], no_text, 3, None)
    with pytest.raises(InputError, match="model directory not found"):
        predict(tmp_path / "nope", no_text, 3, None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "icdtransfer",
            "predict",
            "--model",
            str(models["member"]),
            "--input",
            str(empty),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "empty text" in done.stderr and "Traceback" not in done.stderr


class _Payload:
    """Unpickling this creates a file: proof that a loader ran code from a model folder."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_an_old_pickled_baseline_is_refused_not_loaded(models, notes: Path, tmp_path: Path) -> None:
    import pickle
    import shutil

    old = tmp_path / "old-lr"
    shutil.copytree(models["lr"], old)
    (old / "lr.npz").unlink(missing_ok=True)
    marker = tmp_path / "code-ran"
    (old / "model.joblib").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(InputError, match="model.joblib.*pickle.*retrain"):
        predict(old, notes, 3, None)
    assert not marker.exists()


def _ensemble_with_members(root: Path, ensemble: Path, members: list[str]) -> Path:
    import shutil

    shutil.copytree(ensemble, root, dirs_exist_ok=True)
    (root / "ensemble.json").write_text(json.dumps({"members": members}))
    return root


def test_ensemble_members_outside_the_ensemble_folder_are_refused(
    models, notes: Path, tmp_path: Path
) -> None:
    outside = str(models["member"].resolve())
    for name, members in {
        "relative": [f"../{models['member'].name}"],
        "absolute": [outside],
    }.items():
        folder = _ensemble_with_members(tmp_path / name, models["ensemble"], members)
        if name == "relative":  # the member really is there, one level up
            import shutil

            shutil.copytree(models["member"], tmp_path / models["member"].name)
        with pytest.raises(InputError, match="outside the ensemble folder"):
            predict(folder, notes, 3, None)
    linked = _ensemble_with_members(tmp_path / "linked", models["ensemble"], ["members/evil"])
    (linked / "members").mkdir(exist_ok=True)
    (linked / "members" / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match="outside the ensemble folder"):
        predict(linked, notes, 3, None)


def test_an_ensemble_folder_moves_and_predicts_on_its_own(
    models, notes: Path, tmp_path: Path
) -> None:
    import shutil

    moved = tmp_path / "elsewhere" / "ensemble"
    shutil.copytree(models["ensemble"], moved)
    assert predict(moved, notes, 3, None) == predict(models["ensemble"], notes, 3, None)
