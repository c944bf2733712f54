"""GPU capability (NVML) and the dtype rule that follows from it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    major: int
    minor: int
    product: str
    memory_mib: int

    @property
    def compute_capability(self) -> float:
        return self.major + self.minor / 10


def detect_gpu() -> GpuInfo | None:
    """The first GPU's compute capability via NVML, or None where there is no driver or no GPU."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return None
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total // (1024 * 1024)
        return GpuInfo(int(major), int(minor), name.decode() if isinstance(name, bytes) else str(name), int(memory))
    except pynvml.NVMLError:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def choose_dtype(requested: str, gpu: GpuInfo | None) -> tuple[str, str]:
    """(dtype for vLLM, why). Explicit wins; auto: CC >= 8.0 -> bfloat16, < 8.0 -> half, no GPU -> float32."""
    if requested != "auto":
        return requested, f"set explicitly (DTYPE={requested})"
    if gpu is None:
        return "float32", "no GPU found (CPU build): float32"
    if gpu.compute_capability >= 8.0:
        return "bfloat16", f"{gpu.product} has compute capability {gpu.major}.{gpu.minor} >= 8.0: bfloat16"
    return "half", f"{gpu.product} has compute capability {gpu.major}.{gpu.minor} < 8.0 (no bf16): half"


def choose_kv_cache_dtype(requested: str, gpu: GpuInfo | None) -> str:
    """Map VLLM_KV_CACHE_DTYPE (auto|fp8|fp16|bf16|fp32) onto vLLM 0.32's cache_dtype.

    16- and 32-bit requests mean "not fp8": vLLM's 'auto' keeps the cache in the model's dtype, the
    only combination every attention backend supports. fp8 needs hardware support (CC >= 8.9);
    elsewhere it falls back to auto.
    """
    if requested == "fp8" and gpu is not None and gpu.compute_capability >= 8.9:
        return "fp8"
    return "auto"
