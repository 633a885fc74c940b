"""A sweep's state without Ray: storage roots on a local S3 server, the study lock, the work
key and its manifest, and the member store's index and writes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from helpers.runs import study_args, sweep_command, write_params
from icdtransfer.data.errors import InputError
from icdtransfer.sweep import StudyBusy
from icdtransfer.sweep.lock import holder, study_lock
from icdtransfer.sweep.members import INDEX, STORE, MemberStore, read_index
from icdtransfer.sweep.runner import begin, explain_resume, plan_study, previous_manifest
from icdtransfer.sweep.storage import StateRoot

REPO = Path(__file__).resolve().parents[2]

# --- storage roots -----------------------------------------------------------------------------


def test_uri_paths_are_joined_as_uris_not_mangled_as_local_paths(tmp_path: Path) -> None:
    """`Path("s3://b/ray") / "x"` is `s3:/b/ray/x`: the runner once built every path so."""
    root = StateRoot.open("s3://bucket/ray?endpoint_override=127.0.0.1:9&scheme=http", "st")
    assert root.where("studies/a/k") == "s3://bucket/ray/studies/a/k"
    assert root.remote("members/index.jsonl") == "bucket/ray/members/index.jsonl"
    path, filesystem = root.tune_storage("studies/a/k")
    assert path == "bucket/ray/studies/a/k" and filesystem.type_name == "s3"
    assert root.local == (Path("st") / "s3-bucket-ray").resolve()  # query left out
    local = StateRoot.open(str(tmp_path / "ray"), "st")
    assert local.uri is None and local.tune_storage("x") == (str(tmp_path / "ray" / "x"), None)


def test_push_and_pull_through_a_local_s3_server(s3_server, tmp_path: Path) -> None:
    uri = s3_server()
    head = StateRoot.open(uri, str(tmp_path / "head1"))
    (head.local / "members" / "k" / "seed1").mkdir(parents=True)
    (head.local / "members" / "k" / "seed1" / "a.npy").write_bytes(b"\x00\x01")
    (head.local / "members" / INDEX).write_text('{"key": "k", "seed": 1}\n')
    head.push("members/k/seed1")
    head.push(f"members/{INDEX}")
    assert head.exists("members/k/seed1/a.npy") and not head.exists("members/k/seed2")
    # a new head: an empty working folder, restored from the URI
    other = StateRoot.open(uri, str(tmp_path / "head2"))
    assert other.read_text(f"members/{INDEX}") == '{"key": "k", "seed": 1}\n'
    assert not (other.local / "members").exists()  # read_text reads, never copies
    assert other.pull("members/k/seed1") and other.pull(f"members/{INDEX}")
    assert (other.local / "members" / "k" / "seed1" / "a.npy").read_bytes() == b"\x00\x01"
    assert not other.pull("members/k/seed2")
    # the URI is authoritative: a stale working copy is replaced
    (other.local / "members" / INDEX).write_text("stale\n")
    other.pull(f"members/{INDEX}")
    assert (other.local / "members" / INDEX).read_text() == '{"key": "k", "seed": 1}\n'


# --- the study lock ----------------------------------------------------------------------------


def test_a_second_run_of_a_study_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "studies" / "s" / "lock"
    with study_lock(path, "s"):
        assert holder(path)["pid"] == os.getpid()
        with pytest.raises(StudyBusy, match=rf"study s is already running: pid {os.getpid()} on"):
            with study_lock(path, "s"):
                pass
    assert holder(path) is None
    with study_lock(path, "s"):  # released: the next run takes it
        pass


def test_cli_exits_at_once_while_another_run_holds_the_study(tiny_params, tmp_path: Path) -> None:
    params = replace(tiny_params, ray=replace(tiny_params.ray, storage_path=str(tmp_path / "r")))
    params_file = write_params(params, tmp_path / "params.yaml")
    study = str(REPO / "studies" / "smoke.yaml")
    plan = plan_study(study_args(params, study))
    with study_lock(plan.lock_path, "smoke"):
        start = time.time()
        done = subprocess.run(
            sweep_command(params_file, study),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 75, done.stderr[-2000:]
    assert f"study smoke is already running: pid {os.getpid()}" in done.stderr
    assert "Started a local Ray instance" not in done.stderr  # refused before Ray started
    assert time.time() - start < 60


# --- the work key ------------------------------------------------------------------------------

STUDY = """# a comment
name: keyed
kind: grid
max_concurrent: {concurrent}
seeds: [1]
space:
  variant: [scratch]
  ensemble_size: [1]
train: {{epochs: 2}}
"""


def _plan(params, path: Path):
    return plan_study(study_args(params, str(path)))


def test_work_key_ignores_what_changes_no_result_and_says_what_did(
    tiny_params, tmp_path: Path, caplog
) -> None:
    params = replace(tiny_params, ray=replace(tiny_params.ray, storage_path=str(tmp_path / "r")))
    path = tmp_path / "keyed.yaml"
    path.write_text(STUDY.format(concurrent=2))
    first = _plan(params, path)
    assert "no earlier run" in begin(first)
    assert (first.root.local / first.folder / "manifest.json").exists()

    # comments, key order, how many trials run at once, the device: the same study
    path.write_text("# another comment\n" + STUDY.format(concurrent=4).replace("# a comment\n", ""))
    same = _plan(replace(params, train_target=replace(params.train_target, device="cpu")), path)
    assert same.manifest.key == first.manifest.key
    with caplog.at_level(logging.WARNING):
        assert "resuming its state" in begin(same)
    assert "max_concurrent: 2 -> 4 ignored" in caplog.text

    # a member setting: another key, and the log names the change
    changed = _plan(replace(params, head=replace(params.head, word_dropout=0.25)), path)
    assert changed.manifest.key != first.manifest.key
    line = explain_resume(changed, previous_manifest(changed))
    assert "not resuming the last run's state" in line
    assert "members.head.word_dropout: 0.2 -> 0.25" in line
    assert previous_manifest(changed).key == first.manifest.key


# --- the member store ------------------------------------------------------------------------


def _store(tmp_path: Path) -> MemberStore:
    return MemberStore(StateRoot(tmp_path / "root"))


def _files(tag: bytes) -> dict[str, bytes]:
    return {"metrics.json": b"{}", "probs_test.npy": tag}


def test_a_torn_last_index_line_is_dropped_with_a_warning(tmp_path: Path, caplog) -> None:
    store = _store(tmp_path)
    store.put("k", 1, _files(b"one"), {"x": 1})
    store.put("k", 2, _files(b"two"), {"x": 2})
    index = store.folder / INDEX
    whole = index.read_bytes()
    index.write_bytes(whole[: len(whole) - 9])  # a power loss mid-append
    with caplog.at_level(logging.WARNING):
        again = _store(tmp_path)
    assert "line 2 is cut short" in caplog.text
    # the torn tail is cut off, and the line comes back from the member's marker (its folder
    # was in place before its line was written): not trained again
    assert again.claim("k", 1, "t") == "done" and again.claim("k", 2, "t") == "done"
    assert index.read_bytes() == whole
    again.put("k", 3, _files(b"three"), {"x": 3})  # the next line starts on a line of its own
    assert [r["seed"] for r in read_index(index)] == [1, 2, 3]


def test_a_damaged_line_before_the_last_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for seed in (1, 2, 3):
        store.put("k", seed, _files(b"p"), {})
    index = store.folder / INDEX
    lines = index.read_text().splitlines()
    index.write_text("\n".join([lines[0], lines[1][:20], lines[2]]) + "\n")
    with pytest.raises(InputError, match=rf"{index}: line 2: not a member row, and lines follow"):
        _store(tmp_path)


def test_index_appends_are_fsynced(tmp_path: Path, monkeypatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    store = _store(tmp_path)
    store.put("k", 1, _files(b"p"), {})
    assert str(store.folder / INDEX) in synced
    assert str(store.folder / "k" / "seed1") in synced or any(
        s.startswith(str(store.folder / "k")) for s in synced
    )


def test_a_member_stored_by_another_run_is_kept_not_replaced(tmp_path: Path) -> None:
    """Two runs storing one member: the old put removed the stored folder and renamed its own
    into place, racing the other's rename (and replacing files trials had already used)."""
    first, second = _store(tmp_path), _store(tmp_path)  # two actors, one folder
    assert first.put("k", 1, _files(b"first"), {"by": "first"})
    assert not second.put("k", 1, _files(b"second"), {"by": "second"})
    member = first.folder / "k" / "seed1"
    assert (member / "probs_test.npy").read_bytes() == b"first"
    assert [r["by"] for r in read_index(first.folder / INDEX)] == ["first"]
    assert second.rows() == [{"by": "first", "key": "k", "seed": 1}]
    assert not [p for p in member.parent.iterdir() if p.name.startswith(".")]  # no leftovers


def test_a_member_folder_without_an_index_line_is_replaced(tmp_path: Path) -> None:
    store = _store(tmp_path)
    orphan = store.folder / "k" / "seed1"  # its writer was killed before the index line
    orphan.mkdir(parents=True)
    (orphan / "probs_test.npy").write_bytes(b"half")
    assert store.put("k", 1, _files(b"whole"), {})
    assert (orphan / "probs_test.npy").read_bytes() == b"whole"
    assert json.loads((store.folder / INDEX).read_text())["seed"] == 1


def test_the_store_fetches_indexed_members_from_the_uri(s3_server, tmp_path: Path) -> None:
    uri = s3_server()
    first = MemberStore(StateRoot.open(uri, str(tmp_path / "head1")))
    first.put("k", 1, _files(b"p"), {"by": "head1"})
    later = MemberStore(StateRoot.open(uri, str(tmp_path / "head2")))  # the head was lost
    assert not (later.folder / "k").exists()
    assert later.claim("k", 1, "t") == "done"  # fetched on first use
    assert (later.folder / "k" / "seed1" / "probs_test.npy").read_bytes() == b"p"
    assert later.rows() == [{"by": "head1", "key": "k", "seed": 1}]
    assert STORE == "members"
