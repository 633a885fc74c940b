"""The GPU paths: stage-2 training and inference on CUDA with bf16, Ray Train DDP pretraining
with NCCL on every visible GPU, and a sweep with one GPU per trial.

Run with `.venv/bin/pytest -m gpu tests/gpu` (a few minutes on one GPU); skipped, with the
reason, where CUDA is absent. This repository's CI and development machines have no GPU: these
tests have been read against the functions they call and run there with CUDA replaced by the
CPU, not on a GPU.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.runs import run_sweep
from icdtransfer.artifacts import read_probs
from icdtransfer.config import RayConfig
from icdtransfer.data.corpus import Corpus
from icdtransfer.train.batches import iterate
from icdtransfer.train.loop import predict
from icdtransfer.train.member import load_model
from icdtransfer.train.precision import choose, encoder_shape
from icdtransfer.train.stages import pretrain, train_target

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="CUDA is not available (no GPU, or a CPU-only torch build): GPU paths not run",
    ),
]
REPO = Path(__file__).resolve().parents[2]
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def pretrained(tiny: dict) -> Path:
    if not (Path(tiny["pretrain"].out_dir) / "model.pt").exists():
        pretrain(tiny["encoder"], tiny["pretrain"], tiny["source"])
    return Path(tiny["pretrain"].out_dir)


def test_cuda_batches_equal_cpu_batches_without_dropout(tiny: dict) -> None:
    corpus = Corpus.open(tiny["target"])
    docs = corpus.split("validation")
    args = (corpus, docs, 8, 60, 0.0, 3, None)
    for cpu, gpu in zip(iterate(*args), iterate(*args, device=CUDA), strict=True):
        assert gpu.tokens.is_cuda and gpu.labels.is_cuda
        assert torch.equal(cpu.tokens, gpu.tokens.cpu())
        assert torch.equal(cpu.lengths, gpu.lengths.cpu())
        assert torch.equal(cpu.labels, gpu.labels.cpu())


def test_cuda_word_dropout_is_fixed_by_seed_and_epoch(tiny: dict) -> None:
    """What a resumed run relies on: the epoch's generator, made from (seed, epoch), fixes the
    batches and their word-dropout masks on the GPU too (masks drawn on the device)."""
    corpus = Corpus.open(tiny["target"])
    docs = corpus.split("train")

    def epoch(seed: int) -> list[list[int]]:
        rng = np.random.default_rng([seed, 0])
        batches = iterate(corpus, docs, 8, 60, 0.3, 3, rng, device=CUDA)
        return [b.tokens.cpu().flatten().tolist() for b in batches]

    first = epoch(1)
    assert first == epoch(1)
    assert first != epoch(2)


def test_stage2_trains_and_predicts_on_cuda_in_bf16(
    tiny: dict, pretrained: Path, tmp_path: Path
) -> None:
    cfg = replace(tiny["train_target"], device="cuda", precision="auto", epochs=6)
    member = replace(
        tiny["member"], variant="tune_all", seed=1, checkpoint_dir=str(tmp_path / "ck")
    )
    torch.cuda.reset_peak_memory_stats(CUDA)
    metrics = train_target(
        tiny["encoder"], tiny["head"], cfg, tiny["target"], member, out_dir=str(tmp_path / "m")
    )
    assert torch.cuda.max_memory_allocated(CUDA) > 0  # the training ran on the GPU
    model, _ = load_model(tmp_path / "m")
    assert choose("auto", CUDA, encoder_shape(model)).bf16  # every GPU this targets has bf16
    assert metrics.validation["tuned"].micro_f > 0.5  # the keyword task is learnt
    corpus = Corpus.open(tiny["target"])
    test = corpus.split("test")
    on_gpu = predict(model.to(CUDA), corpus, test, 8, 60, 3, CUDA, True)
    on_cpu = predict(model.cpu(), corpus, test, 8, 60, 3, torch.device("cpu"), False)
    assert np.abs(on_gpu - on_cpu).max() < 0.05  # bf16 against fp32: stated tolerance
    stored = read_probs(tmp_path / "m")[1]
    assert np.abs(stored - on_gpu).max() < 2e-3  # float16 storage of the same predictions


def test_ray_train_ddp_pretraining_with_nccl_on_all_gpus(
    ray_local, tiny: dict, tmp_path: Path
) -> None:
    gpus = torch.cuda.device_count()
    cfg = replace(
        tiny["pretrain"],
        epochs=2,
        num_workers=gpus,
        use_gpu=True,
        precision="auto",
        out_dir=str(tmp_path / "ddp"),
        checkpoint_dir=str(tmp_path / "ck"),
    )
    pretrain(tiny["encoder"], cfg, tiny["source"], RayConfig(storage_path=str(tmp_path / "ray")))
    history = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["workers"] == gpus for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_sweep_gives_each_trial_one_gpu(ray_local, tiny_params, tmp_path: Path) -> None:
    study = tmp_path / "gpu_smoke.yaml"
    study.write_text(
        "name: gpu_smoke\nkind: grid\nmetric: val_macro_f\nmode: max\n"
        f"max_concurrent: {torch.cuda.device_count()}\nresources: {{cpu: 1, gpu: 1}}\n"
        "seeds: [1]\nspace:\n  variant: [scratch, tune_all]\n  ensemble_size: [1]\n"
        "train: {epochs: 1}\n"
    )
    params = replace(tiny_params, sweep=replace(tiny_params.sweep, results_dir=str(tmp_path)))
    run_sweep(params, str(study))
    trials = pd.read_parquet(tmp_path / "gpu_smoke" / "trials.parquet")
    assert set(trials["status"]) == {"TERMINATED"} and len(trials) == 2
    members = pd.read_parquet(tmp_path / "gpu_smoke" / "members.parquet")
    assert len(members) == 2
    assert all(len(ids.split(",")) == 1 and ids != "" for ids in members["gpus"])
