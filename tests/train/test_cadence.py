"""Checkpoint cadence (issue 19): a GPU writes its file checkpoint every few epochs, and a run
killed between two of them still ends where an uninterrupted run does. Forced here on the
CPU with `checkpoint_every`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from builders import loop_settings as settings
from icdtransfer.data.corpus import Corpus
from icdtransfer.model.cnn import EncoderShape, TargetModel
from icdtransfer.train.loop import CUDA_CHECKPOINT_EVERY, checkpoint_due, fit
from icdtransfer.train.state import FileCheckpointer, NoCheckpoints, Snapshot


class Killed(RuntimeError):
    pass


def tiny_model(corpus: Corpus, seed: int = 0) -> TargetModel:
    torch.manual_seed(seed)
    return TargetModel(
        EncoderShape(len(corpus.vocab), 16, 16, (2, 3)), len(corpus.label_table), 16, 0.1
    )


def test_the_cadence_rule() -> None:
    files = FileCheckpointer(Path("unused.pt"))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    auto = settings()
    assert all(checkpoint_due(auto, cpu, files, e, last=False) for e in range(1, 8))
    on_gpu = [e for e in range(1, 12) if checkpoint_due(auto, cuda, files, e, last=False)]
    assert on_gpu == [CUDA_CHECKPOINT_EVERY, 2 * CUDA_CHECKPOINT_EVERY]
    assert checkpoint_due(auto, cuda, files, 3, last=True)  # the last epoch always
    assert checkpoint_due(settings(checkpoint_every=3), cuda, NoCheckpoints(), 1, last=False)


def test_a_run_killed_between_checkpoints_ends_where_an_uninterrupted_one_does(
    tiny: dict, tmp_path: Path
) -> None:
    corpus = Corpus.open(tiny["target"])
    every3 = settings(epochs=6, checkpoint_every=3)
    full = fit(tiny_model(corpus), corpus, every3, FileCheckpointer(tmp_path / "a.pt"))

    path = tmp_path / "b.pt"
    written: list[int] = []

    def kill_after_epoch_5(record) -> None:  # noqa: ANN001
        if path.exists():
            written.append(Snapshot.load(path).loop.epoch)
        if record.epoch == 5:
            raise Killed

    with pytest.raises(Killed):
        fit(tiny_model(corpus), corpus, every3, FileCheckpointer(path), kill_after_epoch_5)
    assert sorted(set(written)) == [3]  # epochs 1, 2, 4 and 5 wrote nothing
    resumed = fit(tiny_model(corpus, seed=99), corpus, every3, FileCheckpointer(path))
    assert [h.epoch for h in resumed.state.history] == [1, 2, 3, 4, 5, 6]

    def timeless(history):  # noqa: ANN001, ANN202
        return [{**h.to_json(), "train_docs_per_s": None} for h in history]

    assert timeless(resumed.state.history) == timeless(full.state.history)
    assert full.state.best_epoch == resumed.state.best_epoch
    for key, value in full.best_state.items():
        assert torch.equal(value, resumed.best_state[key]), key
