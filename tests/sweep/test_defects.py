"""Each defect of issue 20, as the state a kill (or a second head, or a second study) leaves:
every test here fails on the code before the fix (39a0456). No Ray cluster is started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from icdtransfer.config import ConfigError
from icdtransfer.data.splits import split_by_group
from icdtransfer.sweep import members as members_module
from icdtransfer.sweep.members import INDEX, MemberStore, read_index
from icdtransfer.sweep.storage import StateRoot

REPO = Path(__file__).resolve().parents[2]


def _files(tag: bytes) -> dict[str, bytes]:
    return {"metrics.json": b"{}", "probs_test.npy": tag}


class Killed(Exception):
    """What a kill at a fault point leaves: the code after the point never ran."""


def _kill_at(monkeypatch, point: str) -> None:
    def fault(name: str) -> None:
        if name == point:
            raise Killed(point)

    monkeypatch.setattr(members_module, "fault", fault)


# --- 1: a trial's checkpoints outlive Tune's saved state ---------------------------------------


def test_tune_keeps_every_checkpoint_a_saved_state_may_name() -> None:
    """Tune deletes a checkpoint beyond num_to_keep at once and uploads the state naming the
    latest ones later: with num_to_keep=2, a driver lost in between resumed a trial from a
    deleted checkpoint (ERROR, and again with --retry-errored)."""
    from icdtransfer.sweep.runner import _checkpoints

    assert _checkpoints().num_to_keep is None


# --- 2: Optuna is never ahead of Tune after a restore ------------------------------------------

SEARCH = """name: ahead
kind: optuna
metric: val_macro_f
mode: max
num_samples: 4
seeds: [1]
search_seed: 5
space:
  variant: [scratch]
  word_dropout: {uniform: [0.0, 0.5]}
"""


def test_a_restored_search_forgets_what_tune_never_saw(tmp_path: Path) -> None:
    from icdtransfer.sweep.search import StudySearch, activate
    from icdtransfer.sweep.study import load_study, tune_space

    (tmp_path / "ahead.yaml").write_text(SEARCH)
    study = load_study(tmp_path / "ahead.yaml")
    root = StateRoot(tmp_path / "root")
    activate(study.name, root, "studies/ahead/k")
    search = StudySearch(study)
    search.set_search_properties(None, None, tune_space(study))
    first = search.suggest("t1")
    search.save(str(tmp_path / "searcher.pkl"))  # Tune saves its state here ...
    second = search.suggest("t2")  # ... and the driver is lost after this trial was told
    search.on_trial_complete("t2", {"val_macro_f": 0.5, "word_dropout": second["word_dropout"]})
    again = StudySearch.__new__(StudySearch)
    again.restore(str(tmp_path / "searcher.pkl"))
    db = f"sqlite:///{root.local / 'studies/ahead/k/optuna.db'}"
    trials = optuna.load_study(study_name="ahead", storage=db).trials
    assert [t.user_attrs.get("trial_id") for t in trials] == ["t1"]  # Tune's trials, no more
    assert trials[0].params["word_dropout"] == pytest.approx(first["word_dropout"])
    proposed = again.suggest("t2")  # Tune's t2 runs again, as the same trial
    assert proposed["word_dropout"] == pytest.approx(second["word_dropout"])
    assert len(optuna.load_study(study_name="ahead", storage=db).trials) == 2


# --- 3: one member store per storage root ------------------------------------------------------


def test_two_studies_at_once_on_one_root_train_a_shared_member_once(tmp_path: Path) -> None:
    """Two drivers (two store actors) on one root: the claim of one is seen by the other."""
    one, two = MemberStore(StateRoot(tmp_path / "root")), MemberStore(StateRoot(tmp_path / "root"))
    assert one.claim("k", 1, "study-a-trial") == "yours"
    assert two.claim("k", 1, "study-b-trial") == "busy"
    assert one.put("k", 1, _files(b"a"), {"study": "a"})
    assert two.claim("k", 1, "study-b-trial") == "done"
    assert two.rows([("k", 1)]) == [{"study": "a", "key": "k", "seed": 1}]


def test_two_working_copies_pushing_to_one_uri_lose_no_index_line(s3_server, tmp_path) -> None:
    uri = s3_server()
    head1 = MemberStore(StateRoot.open(uri, str(tmp_path / "head1")))
    head2 = MemberStore(StateRoot.open(uri, str(tmp_path / "head2")))  # both open, then put
    head1.put("k", 1, _files(b"one"), {"by": "head1"})
    head2.put("k", 2, _files(b"two"), {"by": "head2"})
    text = StateRoot.open(uri, str(tmp_path / "x")).read_text("members/index.jsonl")
    assert sorted(json.loads(line)["seed"] for line in text.splitlines()) == [1, 2]
    head3 = MemberStore(StateRoot.open(uri, str(tmp_path / "head3")))
    assert head3.claim("k", 1, "t") == head3.claim("k", 2, "t") == "done"


def test_a_member_whose_index_line_was_lost_is_found_by_its_marker(tmp_path: Path) -> None:
    """A TERMINATED trial's member without its index line made writing results fail."""
    store = MemberStore(StateRoot(tmp_path / "root"))
    store.put("k", 1, _files(b"one"), {"trial_id": "t1"})
    (store.folder / INDEX).write_text("")  # the line lost (another head's index pushed over it)
    again = MemberStore(StateRoot(tmp_path / "root"))
    assert again.rows([("k", 1)]) == [{"trial_id": "t1", "key": "k", "seed": 1}]
    assert [r["seed"] for r in read_index(store.folder / INDEX)] == [1]


# --- 4: seed 0 keeps its snapshot --------------------------------------------------------------


def test_a_trial_restarted_on_seed_0_resumes_its_snapshot(tmp_path: Path, monkeypatch) -> None:
    import ray.tune

    from icdtransfer.sweep import reporting as trial

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / trial.PROGRESS_FILE).write_text(json.dumps({"key": "k", "seed": 0}))
    (folder / trial.SNAPSHOT_FILE).write_bytes(b"snapshot")
    checkpoint = ray.tune.Checkpoint.from_directory(str(folder))
    monkeypatch.setattr(ray.tune, "get_checkpoint", lambda: checkpoint)
    monkeypatch.setattr(trial.Snapshot, "load", classmethod(lambda cls, path: path.read_bytes()))
    progress, snapshot = trial.restored("k")
    assert progress.seed == 0 and snapshot == b"snapshot"


# --- 5: the narrower windows -------------------------------------------------------------------


def test_a_kill_between_member_folder_and_index_line_keeps_the_member(
    tmp_path: Path, monkeypatch
) -> None:
    store = MemberStore(StateRoot(tmp_path / "root"))
    _kill_at(monkeypatch, "member_between_folder_and_index")
    with pytest.raises(Killed):
        store.put("k", 1, _files(b"one"), {})
    again = MemberStore(StateRoot(tmp_path / "root"))
    assert again.claim("k", 1, "t") == "done"  # not trained again
    assert [r["seed"] for r in read_index(again.folder / INDEX)] == [1]


def test_a_member_stored_but_not_uploaded_reaches_the_uri(s3_server, tmp_path, monkeypatch):
    uri = s3_server()
    store = MemberStore(StateRoot.open(uri, str(tmp_path / "head1")))
    _kill_at(monkeypatch, "member_before_upload")
    with pytest.raises(Killed):
        store.put("k", 1, _files(b"one"), {})
    monkeypatch.undo()
    again = MemberStore(StateRoot.open(uri, str(tmp_path / "head1")))  # the same head, rerun
    assert again.claim("k", 1, "t") == "done"
    fresh = MemberStore(StateRoot.open(uri, str(tmp_path / "head2")))  # a new head: from S3
    assert fresh.claim("k", 1, "t") == "done"
    assert (fresh.folder / "k" / "seed1" / "probs_test.npy").read_bytes() == b"one"


def test_the_index_is_repaired_in_place_under_its_lock(tmp_path: Path) -> None:
    """A repair that writes a new file loses a line another process appends to the old one."""
    store = MemberStore(StateRoot(tmp_path / "root"))
    store.put("k", 1, _files(b"one"), {})
    index = store.folder / INDEX
    with open(index, "a") as handle:
        handle.write('{"key": "k", "se')  # torn
    inode = os.stat(index).st_ino
    assert [r["seed"] for r in read_index(index)] == [1]
    assert os.stat(index).st_ino == inode and index.read_text().count("\n") == 1


def test_a_second_upload_never_overwrites_a_stored_member(s3_server, tmp_path: Path) -> None:
    uri = s3_server()
    head1 = MemberStore(StateRoot.open(uri, str(tmp_path / "head1")))
    head2 = MemberStore(StateRoot.open(uri, str(tmp_path / "head2")))
    assert head1.put("k", 1, _files(b"first"), {"by": "head1"})
    assert not head2.put("k", 1, _files(b"second"), {"by": "head2"})
    head3 = MemberStore(StateRoot.open(uri, str(tmp_path / "head3")))
    assert head3.claim("k", 1, "t") == "done"
    assert (head3.folder / "k" / "seed1" / "probs_test.npy").read_bytes() == b"first"
    assert head3.rows([("k", 1)]) == [{"by": "head1", "key": "k", "seed": 1}]


def test_uploads_to_the_uri_are_not_threaded(tmp_path: Path, monkeypatch) -> None:
    import pyarrow.fs as pafs

    calls: list[dict] = []
    monkeypatch.setattr(pafs, "copy_files", lambda *a, **kw: calls.append(kw))
    root = StateRoot(tmp_path / "work", "s3://bucket/prefix")
    root._fs = (pafs.LocalFileSystem(), str(tmp_path / "remote"))
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "f").write_text("x")
    root.push("f")
    assert calls and all(kw.get("use_threads") is False for kw in calls)


# --- 6: split sizes beyond the corpus ----------------------------------------------------------


def test_split_sizes_beyond_the_corpus_name_the_keys() -> None:
    with pytest.raises(ConfigError, match=r"target\.validation_size \(2\) \+ target\.test_size"):
        split_by_group(["a", "b", "c"], 2, 1, seed=0, section="target")


def test_prepare_target_with_split_sizes_beyond_the_corpus_exits_2_in_one_line(
    tiny, tmp_path: Path
) -> None:
    from builders import tiny_target_jsonl

    notes = tiny_target_jsonl(tmp_path / "t.jsonl", n=100)
    out = subprocess.run(
        [sys.executable, "-m", "icdtransfer", "prepare-target",
         "--set", f"target.input={notes}", "--set", "target.format=jsonl",
         "--set", f"source.out_dir={tiny['source']}",
         "--set", f"target.out_dir={tmp_path / 'out'}",
         "--set", "target.validation_size=60", "--set", "target.test_size=60"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("icdtransfer prepare-target: error: target.validation_size (60)")
    assert not (tmp_path / "out").exists()


def test_a_member_of_a_tune_trial_lost_with_the_driver_counts_for_its_rerun() -> None:
    """The restored search asks for the lost trial's configuration again; the new Tune trial
    reuses the member the lost one stored, which then counts for it (the exact count)."""
    import pandas as pd

    from icdtransfer.sweep.results import credit_lost_trials

    trials = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "status": ["TERMINATED", "TERMINATED", "EARLY_STOPPED"],
            "member_key": ["k1", "k2", None],
            "seeds": ["[1]", "[1]", None],
            "members_trained_here": [1, 0, None],
        }
    )
    members = pd.DataFrame(
        {"key": ["k1", "k2"], "seed": [1, 1], "study": ["s", "s"], "trial_id": ["a", "lost"]}
    )
    credit_lost_trials(trials, members, "s")
    assert trials["members_trained_here"].tolist()[:2] == [1, 1]
    assert members["trial_id"].tolist() == ["a", "b"]
    other = members.assign(study="other", trial_id=["a", "x"])  # another study's: untouched
    credit_lost_trials(trials, other, "s")
    assert other["trial_id"].tolist() == ["a", "x"]


# --- found by the fault test: ASHA resumed from a saved state older than a trial's checkpoint --
def test_asha_decides_a_rung_the_saved_state_missed_on_the_rungs_own_epoch() -> None:
    """Rung at epoch 2. Trial a reports epoch 2 (0.40). Trial b's epoch-2 report is lost with
    the scheduler state (a URI's experiment state lags its checkpoints), so b's first report
    is epoch 3 (0.70; its curve says 0.50 at epoch 2). Trial c reports 0.47 at epoch 2: the
    median of a and b at the rung is 0.45, so c continues, as in an uninterrupted run. Plain
    ASHA records b's 0.70 at the rung and stops c (median 0.55)."""
    from types import SimpleNamespace

    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from icdtransfer.sweep.reporting import CLOCK, FIRST_MEMBER_CURVE, FIRST_MEMBER_METRIC
    from icdtransfer.sweep.search import ResumableASHA

    def report(epoch: int, curve: list[float]) -> dict:
        return {CLOCK: epoch, FIRST_MEMBER_METRIC: curve[-1], FIRST_MEMBER_CURVE: json.dumps(curve)}

    def decide(kind: type) -> tuple[str, dict]:
        scheduler = kind(
            time_attr=CLOCK, metric=FIRST_MEMBER_METRIC, mode="max", max_t=3, grace_period=2,
            reduction_factor=2, stop_last_trials=False,
        )  # fmt: skip
        a, b, c = (SimpleNamespace(trial_id=name) for name in "abc")
        for trial in (a, b, c):
            scheduler.on_trial_add(None, trial)
        assert scheduler.on_trial_result(None, a, report(2, [0.3, 0.4])) == "CONTINUE"
        assert scheduler.on_trial_result(None, b, report(3, [0.2, 0.5, 0.7])) == "CONTINUE"
        action = scheduler.on_trial_result(None, c, report(2, [0.3, 0.47]))
        return action, dict(scheduler._trial_info["a"]._rungs[-1][1])

    action, recorded = decide(ResumableASHA)
    assert action == TrialScheduler.CONTINUE and recorded == {"a": 0.4, "b": 0.5, "c": 0.47}
    plain, recorded = decide(ASHAScheduler)
    assert plain == TrialScheduler.STOP and recorded["b"] == 0.7  # the defect, for contrast
