"""What the server and the transcriber know of an engine, whichever ENGINE runs (engine/vllm_engine.py,
engine/ct2_engine.py): its results, its profile, and the Engine protocol both implement.

Kept free of any engine's imports: the CTranslate2 server process loads neither vLLM nor torch (tests/unit/
test_ct2_imports.py), so nothing it imports may import them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .token_logprobs import TokenLogprob
from .vocab import WhisperVocab


@dataclass(frozen=True)
class EngineProfile:
    """What the engine was started with, and why (reported by /health and the logs)."""

    dtype: str
    dtype_reason: str
    kv_cache_dtype: str
    attention_backend: str | None
    device: str


@dataclass
class Generation:
    tokens: list[int]
    logprobs: list[float]
    no_speech_prob: float | None


class Engine(Protocol):
    """An engine's start() loads the model; nothing else is called before it returns (vocab and the text
    conversions come from engine/text.py's EngineText)."""

    profile: EngineProfile

    @property
    def batch_size(self) -> int: ...

    @property
    def vocab(self) -> WhisperVocab: ...

    @property
    def alive(self) -> bool: ...

    async def start(self) -> None: ...

    def shutdown(self) -> None: ...

    def pending_requests(self) -> int: ...

    async def detect_language(self, samples: np.ndarray) -> tuple[str, float]: ...

    async def generate(
        self,
        samples: np.ndarray,
        decoder_ids: list[int],
        temperature: float,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> Generation: ...

    def generate_steps(
        self, samples: np.ndarray, decoder_ids: list[int], temperature: float
    ) -> AsyncIterator[tuple[list[int], list[float]]]: ...

    def detokenize(self, tokens: list[int]) -> str: ...

    def encode_text(self, text: str) -> list[int]: ...

    def token_logprobs(self, tokens: list[int], logprobs: list[float]) -> list[TokenLogprob]: ...
