"""The vLLM AsyncLLMEngine behind the API: one Whisper model, encoder-decoder prompts, abortable."""
from __future__ import annotations

import logging
import math
import os
import uuid
from dataclasses import dataclass

import numpy as np

from ..config import Settings
from ..gpu import GpuInfo, choose_dtype, choose_kv_cache_dtype
from ..languages import all_codes
from .vocab import WhisperVocab

log = logging.getLogger(__name__)


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


class EngineError(RuntimeError):
    """The engine failed on a request it accepted (not the client's fault)."""


def build_profile(settings: Settings, gpu: GpuInfo | None) -> EngineProfile:
    dtype, why = choose_dtype(settings.dtype, gpu)
    backend = settings.attention_backend
    if backend and "FLASHINFER" in backend and not settings.use_flashinfer:
        raise ValueError(f"VLLM_ATTENTION_BACKEND={backend} contradicts VLLM_USE_FLASHINFER=0")
    return EngineProfile(dtype=dtype, dtype_reason=why,
                         kv_cache_dtype=choose_kv_cache_dtype(settings.kv_cache_dtype, dtype, gpu),
                         attention_backend=backend,
                         device="cpu" if gpu is None else f"cuda ({gpu.product}, CC {gpu.major}.{gpu.minor})")


def engine_args(settings: Settings, profile: EngineProfile) -> dict:
    """Keyword arguments for vLLM's AsyncEngineArgs (pure, unit-tested)."""
    args = dict(
        model=settings.model_id, tokenizer=settings.model_id, dtype=profile.dtype,
        kv_cache_dtype=profile.kv_cache_dtype, max_model_len=settings.max_model_len,
        max_num_seqs=settings.max_num_seqs, limit_mm_per_prompt={"audio": 1},
        max_logprobs=128,  # language detection scores all ~100 language tokens in one step
        served_model_name=[settings.model_name],
        # CPU: no CUDA graphs. GPU: graphs on (vLLM's default), the faster path for the decoder.
        enforce_eager=profile.device == "cpu", enable_log_requests=False,
    )
    if profile.device != "cpu":
        args["gpu_memory_utilization"] = settings.gpu_memory_utilization
    if profile.attention_backend:
        args["attention_backend"] = profile.attention_backend
    return args


class WhisperEngine:
    def __init__(self, settings: Settings, gpu: GpuInfo | None):
        self.settings = settings
        self.profile = build_profile(settings, gpu)
        self._engine = None
        self.vocab: WhisperVocab | None = None
        self.tokenizer = None

    async def start(self) -> None:
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        if self.profile.device == "cpu":
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; plenty for Whisper's 448 tokens
        if not self.settings.use_flashinfer:
            os.environ["VLLM_USE_FLASHINFER_SAMPLER"] = "0"
        self.tokenizer = AutoTokenizer.from_pretrained(self.settings.model_id)
        self.vocab = WhisperVocab.from_tokenizer(self.tokenizer, all_codes())
        args = engine_args(self.settings, self.profile)
        log.info("starting vLLM: %s", {k: v for k, v in args.items() if k != "tokenizer"})
        self._engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**args))

    def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    @property
    def alive(self) -> bool:
        return self._engine is not None and not getattr(self._engine, "errored", False)

    def decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode([t for t in tokens if t < self.vocab.eot])

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(" " + text.strip(), add_special_tokens=False)

    async def _run(self, samples: np.ndarray, decoder_ids: list[int], params) -> object:
        from vllm.inputs import TokensPrompt
        prompt = {
            "encoder_prompt": {"prompt": "", "multi_modal_data": {"audio": (samples, self.settings.sampling_rate)}},
            "decoder_prompt": TokensPrompt(prompt_token_ids=decoder_ids),
        }
        final = None
        # Cancelling this coroutine (client gone) makes vLLM abort the request: no orphaned generation.
        try:
            async for out in self._engine.generate(prompt, params, request_id=uuid.uuid4().hex):
                final = out
        except (ValueError, TypeError) as exc:
            raise EngineError(f"engine rejected the request: {exc}") from exc
        if final is None or not final.outputs:
            raise EngineError("engine returned no output")
        return final.outputs[0]

    async def detect_language(self, samples: np.ndarray) -> tuple[str, float, float | None]:
        """(language code, its probability, no-speech probability) from one constrained decoder step."""
        from vllm import SamplingParams
        ids = list(self.vocab.languages.values())
        extra = [self.vocab.nospeech] if self.vocab.nospeech is not None else []
        params = SamplingParams(temperature=0.0, max_tokens=1, allowed_token_ids=ids,
                                logprobs=len(ids + extra), logprob_token_ids=ids + extra, detokenize=False)
        out = await self._run(samples, [self.vocab.sot], params)
        token = out.token_ids[0]
        scores = out.logprobs[0] if out.logprobs else {}
        lang_prob = math.exp(scores[token].logprob) if token in scores else float("nan")
        nospeech = math.exp(scores[extra[0]].logprob) if extra and extra[0] in scores else None
        return self.vocab.language_by_id[token], lang_prob, nospeech

    async def generate(self, samples: np.ndarray, decoder_ids: list[int], temperature: float,
                       max_tokens: int | None = None) -> Generation:
        from vllm import SamplingParams
        budget = self.settings.max_model_len - len(decoder_ids)
        timestamps = decoder_ids[-1] != self.vocab.notimestamps
        params = SamplingParams(temperature=temperature, max_tokens=min(max_tokens or budget, budget),
                                logprobs=0, detokenize=False, skip_special_tokens=False,
                                # Whisper, asked for timestamps, may still choose <|notimestamps|>
                                logit_bias={self.vocab.notimestamps: -100.0} if timestamps else None)
        out = await self._run(samples, decoder_ids, params)
        tokens = list(out.token_ids)
        lps = [(step.get(t).logprob if step and t in step else 0.0) for t, step in zip(tokens, out.logprobs or [])]
        return Generation(tokens=tokens, logprobs=lps, no_speech_prob=None)
