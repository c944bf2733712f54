"""Attention backends the operator may emit in VLLM_ATTENTION_BACKEND, checked against vLLM 0.32's registry.

Whisper is an encoder-decoder model: its decoder's cross-attention needs a backend whose
``supports_attn_type(AttentionType.ENCODER_DECODER)`` is true. In vLLM 0.32 (``vllm.v1.attention.backends``) the
CUDA backends that qualify are FLASH_ATTN (compute capability >= 8.0) and TRITON_ATTN (any capability, so the one
that works on Turing/Volta). FLASHINFER and FLEX_ATTENTION are decoder/encoder-only there, so they are never offered.
``tests/unit/test_operator_attention.py`` imports the installed registry and fails if this table drifts from it.
"""

from __future__ import annotations

# name -> minimum compute capability (None: no floor)
BACKENDS: dict[str, tuple[int, int] | None] = {
    "FLASH_ATTN": (8, 0),
    "TRITON_ATTN": None,
}
AUTO = "auto"
CHOICES = (AUTO, *BACKENDS)


def min_cc(backend: str) -> tuple[int, int] | None:
    return BACKENDS.get(backend)


def choose(cc: tuple[int, int], kv_cache_dtype: str) -> tuple[str, str]:
    """(backend, why) for a compute capability and the chosen KV cache dtype."""
    if cc < (8, 0):
        return "TRITON_ATTN", (
            f"compute capability {cc[0]}.{cc[1]} < 8.0: FLASH_ATTN needs Ampere+, TRITON_ATTN supports "
            "encoder-decoder cross-attention on any CUDA GPU"
        )
    if kv_cache_dtype == "fp8" and cc < (9, 0):
        return "TRITON_ATTN", "fp8 KV cache below Hopper: TRITON_ATTN has native fp8 KV on compute capability >= 8.9"
    return "FLASH_ATTN", f"compute capability {cc[0]}.{cc[1]} >= 8.0: FLASH_ATTN supports encoder-decoder attention"
