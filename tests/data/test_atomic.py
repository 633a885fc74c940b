"""Whole outputs or none: what a killed writer leaves beside an output is cleaned at the next
start (and git-ignored until then); what a running writer is building is left alone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from icdtransfer.data.atomic import atomic_dir, atomic_file, clean_leftovers

REPO = Path(__file__).resolve().parents[2]

# Enters atomic_dir (or atomic_file) for argv[1], writes into it, says so, and waits to be killed.
WRITER = """
import sys, time
from icdtransfer.data.atomic import atomic_dir, atomic_file
if sys.argv[2] == "dir":
    with atomic_dir(sys.argv[1]) as tmp:
        (tmp / "tokens.npy").write_bytes(b"x" * 1000)
        print("writing", flush=True)
        time.sleep(120)
else:
    with atomic_file(sys.argv[1]) as handle:
        handle.write("{}")
        handle.flush()
        print("writing", flush=True)
        time.sleep(120)
"""


def _start_writer(final: Path, kind: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(final), kind], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_writers_temporary_folder_is_removed_at_the_next_start(tmp_path: Path) -> None:
    final = tmp_path / "target"
    with atomic_dir(final) as tmp:
        (tmp / "stats.json").write_text("1")
    _kill(_start_writer(final, "dir"))
    assert len(_leftovers(tmp_path, "target")) == 1  # the killed run's half-written corpus
    with atomic_dir(final) as tmp:
        (tmp / "stats.json").write_text("2")
    assert _leftovers(tmp_path, "target") == []
    assert (final / "stats.json").read_text() == "2"


def test_a_killed_writers_temporary_file_is_removed_at_the_next_start(tmp_path: Path) -> None:
    final = tmp_path / "metrics.json"
    _kill(_start_writer(final, "file"))
    assert len(_leftovers(tmp_path, "metrics.json")) == 1
    with atomic_file(final) as handle:
        handle.write("{}")
    assert _leftovers(tmp_path, "metrics.json") == []


def test_a_running_writers_temporary_folder_is_left_alone(tmp_path: Path) -> None:
    final = tmp_path / "target"
    proc = _start_writer(final, "dir")
    try:
        building = _leftovers(tmp_path, "target")
        with atomic_dir(final) as tmp:
            (tmp / "stats.json").write_text("1")
        assert _leftovers(tmp_path, "target") == building
    finally:
        _kill(proc)


def test_a_kill_between_the_renames_keeps_the_finished_output(tmp_path: Path) -> None:
    # Killed after `final` moved aside to .old and before the finished .tmp took its place:
    # the finished folder is promoted, the old one removed.
    final = tmp_path / "target"
    tag = f"{socket.gethostname()}-{_dead_pid()}"
    finished = tmp_path / f".target.tmp-{tag}-abcd1234"
    finished.mkdir()
    (finished / "stats.json").write_text("new")
    old = tmp_path / f".target.old-{tag}"
    old.mkdir()
    (old / "stats.json").write_text("old")
    with atomic_dir(tmp_path / "other") as tmp:  # another output's start leaves them alone
        (tmp / "x").write_text("1")
    assert finished.exists() and old.exists()
    clean_leftovers(final)  # what atomic_dir(final) does first
    assert (final / "stats.json").read_text() == "new"
    assert _leftovers(tmp_path, "target") == []


def test_leftover_names_are_git_ignored() -> None:
    names = [
        "data/prepared/.target.tmp-node-1-4242-abcd1234",
        "data/prepared/.target.old-node-1-4242",
        "models/baseline/.metrics.json.tmp-node-1-4242-abcd1234",
        "results/table2/members/.seed1.tmp-4242",
    ]
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", *names], cwd=REPO, capture_output=True, text=True
    )
    assert sorted(done.stdout.split()) == sorted(names), done.stderr
    assert os.path.exists(REPO / ".gitignore")
