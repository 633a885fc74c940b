"""The command line: help, errors without tracebacks, and no note text in any log line."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "icdtransfer", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_help_lists_every_stage_command() -> None:
    out = run("--help")
    assert out.returncode == 0
    for command in ("synthesize", "prepare-source", "prepare-target"):
        assert command in out.stdout
    sub = run("prepare-target", "--help")
    assert "--params FILE" in sub.stdout and "--set SECTION.KEY=VALUE" in sub.stdout


def test_bad_input_exits_2_with_a_one_line_error(tmp_path: Path) -> None:
    out = run(
        "prepare-target",
        "--set",
        f"target.input={tmp_path}",
        "--set",
        f"source.out_dir={tmp_path / 'no-source'}",
        "--set",
        f"target.out_dir={tmp_path / 'out'}",
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("icdtransfer prepare-target: error: ")
    assert "run prepare-source first" in out.stderr
    assert not (tmp_path / "out").exists()
    bad = run("synthesize", "--set", "synthesize.notes=lots")
    assert bad.returncode == 2 and "synthesize.notes must be int" in bad.stderr


@pytest.mark.parametrize(
    ("command", "missing", "says"),
    [
        ("pretrain", "source", "not a prepared corpus"),
        ("baseline", "target", "not a prepared corpus"),
        ("train-target", "target", "not a prepared corpus"),
        ("report", "target", "not a prepared corpus"),
        ("train-target", "pretrain/model.pt", "model not found"),
    ],
)
def test_a_stage_run_before_its_inputs_exist_says_so_in_one_line(
    command: str, missing: str, says: str, tiny: dict, tmp_path: Path
) -> None:
    """Out of order (a stage before the one that writes its input): exit 2, one line naming
    the missing folder or file, no traceback, nothing written."""
    gone = tmp_path / "gone"
    paths = {
        "source.out_dir": tiny["source"],
        "target.out_dir": tiny["target"],
        "train_target.pretrained": tiny["pretrain"].out_dir,
    }
    key = {"source": "source.out_dir", "target": "target.out_dir"}.get(missing)
    paths[key or "train_target.pretrained"] = str(gone / "pretrain" if key is None else gone)
    outs = {
        "pretrain.out_dir": tmp_path / "pretrain",
        "pretrain.checkpoint_dir": tmp_path / "ckpt1",
        "baseline.out_dir": tmp_path / "lr",
        "member.out_dir": tmp_path / "members",
        "member.checkpoint_dir": tmp_path / "ckpt2",
        "report.out_dir": tmp_path / "reports",
        "sweep.results_dir": tmp_path / "results",
    }
    sets = [a for k, v in {**paths, **outs}.items() for a in ("--set", f"{k}={v}")]
    out = run(command, "--params", str(REPO / "params.yaml"), *sets, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"icdtransfer {command}: error: {gone}") and says in line
    assert not any(path.exists() for path in outs.values())


def test_stage_logs_never_contain_note_text(tmp_path: Path) -> None:
    """Every 6-word window of the synthetic notes is absent from the stages' output."""
    raw, source, target = tmp_path / "raw", tmp_path / "source", tmp_path / "target"
    sets = [
        "--set",
        "synthesize.notes=150",
        "--set",
        f"synthesize.out_dir={raw}",
        "--set",
        f"source.out_dir={source}",
        "--set",
        f"target.input={raw}",
        "--set",
        f"target.out_dir={target}",
        "--set",
        "target.min_count=5",
        "--set",
        "target.validation_size=20",
        "--set",
        "target.test_size=20",
    ]
    logs = ""
    for command in ("synthesize", "prepare-source", "prepare-target"):
        out = run(command, *sets, "--verbose")
        assert out.returncode == 0, out.stderr
        logs += out.stdout + out.stderr
    assert "Table 1" in logs
    logs = " ".join(logs.split())
    with gzip.open(raw / "NOTEEVENTS.csv.gz", "rt", encoding="utf-8") as handle:
        words = re.findall(r"\S+", handle.read())
    windows = {" ".join(words[i : i + 6]) for i in range(0, len(words) - 6)}
    assert len(windows) > 10_000
    leaked = [w for w in windows if w in logs]
    assert leaked == []


def test_internal_errors_keep_their_traceback(monkeypatch, tmp_path: Path, capsys) -> None:
    """A ValueError from a bug is not bad input: it propagates (Python prints the traceback,
    exit 1), where expected input errors (ConfigError, InputError) stay one line, exit 2."""
    from icdtransfer import cli
    from icdtransfer.data.errors import InputError

    def bug(params, args) -> None:
        raise ValueError("an internal inconsistency")

    def bad_file(params, args) -> None:
        raise InputError(tmp_path / "notes.csv", "line 3", "missing column TEXT")

    monkeypatch.setitem(cli.COMMANDS, "synthesize", (bug, "help"))
    monkeypatch.setitem(cli.COMMANDS, "baseline", (bad_file, "help"))
    params = ["--params", str(REPO / "params.yaml")]
    with pytest.raises(ValueError, match="an internal inconsistency"):
        cli.main(["synthesize", *params])
    assert cli.main(["baseline", *params]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"icdtransfer baseline: error: {tmp_path / 'notes.csv'}: line 3: missing column TEXT"
    ]
