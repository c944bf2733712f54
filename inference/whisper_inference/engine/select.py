"""The engine named by ENGINE: vLLM (GPUs, and CPUs) or CTranslate2 int8 (CPU pools)."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Settings
from ..gpu import GpuInfo
from .interface import Engine


def build_engine(settings: Settings, gpu_detector: Callable[[], GpuInfo | None]) -> Engine:
    if settings.engine == "ctranslate2":
        from .ct2_engine import CT2Engine  # no vLLM import, no GPU probe

        return CT2Engine(settings)
    from .vllm_engine import WhisperEngine

    return WhisperEngine(settings, gpu_detector())
