"""`precision: auto`: the capability rule, the measurement, its cache, and one log line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from icdtransfer.model.cnn import EncoderShape, TargetModel
from icdtransfer.model.conv_pool import KERNELS
from icdtransfer.train import precision

SHAPE = EncoderShape(50, 8, 8, (2, 3))
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No decision remembered from another test; the cache in a temporary folder."""
    monkeypatch.setattr(precision, "_CHOSEN", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "icdtransfer" / "precision.json"


def timing(fp32_ms: float, bf16_ms: float, calls: list | None = None):  # noqa: ANN201
    def measure(shape: EncoderShape) -> dict[str, float]:
        if calls is not None:
            calls.append(shape)
        return {"fp32_ms": fp32_ms, "bf16_ms": bf16_ms}

    return measure


def test_cpu_without_native_bf16_is_fp32_without_timing_bf16(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    choice = precision.choose("auto", CPU, SHAPE)
    assert not choice.bf16 and "neither AVX512-BF16 nor AMX" in choice.reason
    assert choice.kernel in KERNELS and choice.kernel_reason.startswith("fp32 encoder")
    times = precision.cached_cpu_timing(SHAPE)  # the kernels' fp32 timings only
    assert set(times) == {"fp32_ms", "fp32_conv_ms", "fp32_gemm_ms", "fp32_unique_ms"}


def test_measured_bf16_slower_picks_fp32_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "measure_cpu", timing(10.0, 14.0))  # a Xeon without AMX
    choice = precision.choose("auto", CPU, SHAPE)
    assert not choice.bf16
    assert "fp32 10.0 ms, bf16 14.0 ms, bf16 0.71x < 1.1x" in choice.reason


def test_measured_bf16_faster_picks_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "measure_cpu", timing(10.0, 4.0))
    choice = precision.choose("auto", CPU, SHAPE)
    assert choice.bf16 and "bf16 2.50x >= 1.1x" in choice.reason


def test_a_marginal_bf16_gain_keeps_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "measure_cpu", timing(10.0, 9.5))
    assert not precision.choose("auto", CPU, SHAPE).bf16


def test_params_override_the_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "measure_cpu", timing(10.0, 1.0))
    assert not precision.choose("fp32", CPU, SHAPE).bf16
    assert precision.choose("bf16", CPU, SHAPE).bf16
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        precision.choose("fp16", CPU, SHAPE)


def test_cuda_uses_bf16_where_the_gpu_supports_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    for supported in (True, False):
        monkeypatch.setattr(precision, "_CHOSEN", {})
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        choice = precision.choose("auto", torch.device("cuda"), SHAPE)
        assert choice.bf16 is supported and "Test GPU" in choice.reason


def test_measurement_is_cached_per_shape(monkeypatch: pytest.MonkeyPatch, fresh: Path) -> None:
    calls: list = []
    monkeypatch.setattr(precision, "measure_cpu", timing(10.0, 4.0, calls))
    assert precision.cached_cpu_timing(SHAPE) == {"fp32_ms": 10.0, "bf16_ms": 4.0}
    assert precision.cached_cpu_timing(SHAPE) == {"fp32_ms": 10.0, "bf16_ms": 4.0}
    assert calls == [SHAPE]  # the second run read the cache
    (key,) = json.loads(fresh.read_text())
    assert torch.__version__ in key and precision.cpu_model() in key and "E=8 F=8" in key
    other = EncoderShape(50, 16, 8, (2, 3))
    precision.cached_cpu_timing(other)
    assert calls == [SHAPE, other]


def test_unreadable_cache_is_measured_again(monkeypatch: pytest.MonkeyPatch, fresh: Path) -> None:
    fresh.parent.mkdir(parents=True)
    fresh.write_text("{not json")
    monkeypatch.setattr(precision, "measure_cpu", timing(3.0, 2.0))
    assert precision.cached_cpu_timing(SHAPE) == {"fp32_ms": 3.0, "bf16_ms": 2.0}
    assert len(json.loads(fresh.read_text())) == 1


def test_decided_and_logged_once_per_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    calls: list = []
    monkeypatch.setattr(precision, "measure_cpu", timing(10.0, 14.0, calls))
    model = TargetModel(SHAPE, 3, 4, 0.0, frozen_copy=True)
    with caplog.at_level(logging.INFO, logger=precision.__name__):
        for _ in range(3):
            assert precision.use_bf16("auto", CPU, model) is False
    assert len(calls) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("precision auto: fp32 on cpu (")


def test_real_measurement_leaves_the_random_stream_and_threads_alone() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    threads = torch.get_num_threads()
    times = precision.measure_cpu(SHAPE)  # times on one thread
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected)
    assert times["fp32_ms"] > 0
    assert ("bf16_ms" in times) is precision.cpu_has_bf16()  # bf16 timed only where native
    assert times["fp32_ms"] == min(times[f"fp32_{k}_ms"] for k in KERNELS)


def kernel_timing(**times: float):  # noqa: ANN201
    def measure(shape: EncoderShape) -> dict[str, float]:
        out = dict(times)
        for name in ("fp32", "bf16"):
            out[f"{name}_ms"] = min(v for k, v in times.items() if k.startswith(name))
        return out

    return measure


def test_the_fastest_kernel_of_the_chosen_precision_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    fake = kernel_timing(fp32_conv_ms=10.0, fp32_gemm_ms=7.0, bf16_conv_ms=3.0, bf16_gemm_ms=5.0)
    monkeypatch.setattr(precision, "measure_cpu", fake)
    choice = precision.choose("auto", CPU, SHAPE)
    assert choice.bf16 and choice.kernel == "conv"  # bf16 3.0 ms (conv) beats fp32 7.0 (gemm)
    assert "bf16 2.33x" in choice.reason and "conv 3.0 ms, gemm 5.0 ms" in choice.kernel_reason
    fp32 = precision.choose("fp32", CPU, SHAPE)  # an explicit precision still gets its kernel
    assert not fp32.bf16 and fp32.kernel == "gemm"
    model = TargetModel(SHAPE, 3, 4, 0.0, frozen_copy=True)
    assert precision.use_bf16("fp32", CPU, model) is False
    assert model.encoder.kernel == model.frozen_encoder.kernel == "gemm"


def test_the_cache_key_names_the_instruction_set_limits(
    monkeypatch: pytest.MonkeyPatch, fresh: Path
) -> None:
    monkeypatch.setattr(precision, "measure_cpu", timing(10.0, 4.0))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    precision.cached_cpu_timing(SHAPE)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    precision.cached_cpu_timing(SHAPE)
    keys = list(json.loads(fresh.read_text()))
    assert len(keys) == 2 and any("ONEDNN_MAX_CPU_ISA=AVX2" in k for k in keys)
    assert all(torch.backends.cpu.get_cpu_capability() in k for k in keys)


def test_an_avx2_cap_means_no_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """How an AVX2-only checking machine is emulated: oneDNN capped at AVX2 has no bf16."""
    from icdtransfer.train import hardware

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert hardware.limited_to_avx2() and not hardware.cpu_has_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert hardware.limited_to_avx2() is not torch.backends.cpu.get_cpu_capability().startswith(
        "AVX512"
    )
