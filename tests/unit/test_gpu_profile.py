import pytest

from whisper_inference.config import load_settings
from whisper_inference.engine.vllm_engine import build_profile, engine_args
from whisper_inference.gpu import GpuInfo, choose_dtype, choose_kv_cache_dtype

T4 = GpuInfo(7, 5, "Tesla T4", 15360)
A100 = GpuInfo(8, 0, "NVIDIA A100-SXM4-40GB", 40960)
L4 = GpuInfo(8, 9, "NVIDIA L4", 23034)
H100 = GpuInfo(9, 0, "NVIDIA H100 80GB HBM3", 81559)


@pytest.mark.unit
@pytest.mark.parametrize(
    "gpu,dtype", [(T4, "half"), (A100, "bfloat16"), (L4, "bfloat16"), (H100, "bfloat16"), (None, "float32")]
)
def test_auto_dtype_follows_compute_capability(gpu, dtype):
    assert choose_dtype("auto", gpu)[0] == dtype


@pytest.mark.unit
def test_explicit_dtype_wins():
    assert choose_dtype("half", H100) == ("half", "set explicitly (DTYPE=half)")


@pytest.mark.unit
@pytest.mark.parametrize(
    "requested,gpu,expected",
    [
        ("fp8", H100, "fp8"),
        ("fp8", L4, "fp8"),
        ("fp8", A100, "auto"),
        ("fp8", T4, "auto"),
        ("fp8", None, "auto"),
        ("fp16", T4, "auto"),
        ("fp16", H100, "auto"),
        ("bf16", A100, "auto"),
        ("fp32", None, "auto"),
    ],
)
def test_kv_cache_dtype_maps_to_vllm(requested, gpu, expected):
    assert choose_kv_cache_dtype(requested, gpu) == expected


@pytest.mark.vllm
def test_kv_cache_values_are_known_to_vllm():
    from typing import get_args

    from vllm.config.cache import CacheDType

    for req in ("auto", "fp8", "fp16", "bf16", "fp32"):
        for gpu in (T4, L4, H100, None):
            assert choose_kv_cache_dtype(req, gpu) in get_args(CacheDType)


@pytest.mark.vllm
def test_engine_args_cpu_and_gpu(monkeypatch):
    monkeypatch.setenv("MODEL_ID", "/models/whisper")
    monkeypatch.setenv("VLLM_ATTENTION_BACKEND", "triton_attn")
    s = load_settings()
    cpu = engine_args(s, build_profile(s, None))
    assert cpu["dtype"] == "float32" and cpu["enforce_eager"] and "gpu_memory_utilization" not in cpu
    assert cpu["limit_mm_per_prompt"] == {"audio": 1} and cpu["max_model_len"] == 448
    assert cpu["max_num_seqs"] == 16
    gpu = engine_args(s, build_profile(s, T4))
    assert gpu["dtype"] == "half" and not gpu["enforce_eager"] and gpu["attention_backend"] == "TRITON_ATTN"
    assert gpu["max_num_seqs"] == 128
    from vllm.engine.arg_utils import AsyncEngineArgs

    AsyncEngineArgs(**cpu)  # every key is one vLLM 0.32 accepts


@pytest.mark.unit
def test_flashinfer_backend_conflicts_with_flashinfer_off(monkeypatch):
    monkeypatch.setenv("MODEL_ID", "/models/whisper")
    monkeypatch.setenv("VLLM_ATTENTION_BACKEND", "FLASHINFER")
    monkeypatch.setenv("VLLM_USE_FLASHINFER", "0")
    with pytest.raises(ValueError, match="VLLM_USE_FLASHINFER"):
        build_profile(load_settings(), H100)
