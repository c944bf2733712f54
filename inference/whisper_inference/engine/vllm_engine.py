"""The vLLM AsyncLLMEngine behind the API: one Whisper model, encoder-decoder prompts, abortable."""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Settings
from ..cpu import affinity_cores, usable_cores, vllm_thread_env
from ..gpu import GpuInfo, choose_dtype, choose_kv_cache_dtype
from ..languages import all_codes
from .interface import EngineProfile, Generation
from .text import EngineDead, EngineError, EngineText
from .timestamp_rules import EXTRA_ARG, LOGITS_PROCESSOR
from .vocab import WhisperVocab

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.outputs import RequestOutput
    from vllm.v1.engine.async_llm import AsyncLLM

log = logging.getLogger(__name__)
NO_SPEECH_TOP_K = 20


def build_profile(settings: Settings, gpu: GpuInfo | None) -> EngineProfile:
    dtype, why = choose_dtype(settings.dtype, gpu)
    backend = settings.attention_backend
    if backend and "FLASHINFER" in backend and not settings.use_flashinfer:
        raise ValueError(f"VLLM_ATTENTION_BACKEND={backend} contradicts VLLM_USE_FLASHINFER=0")
    return EngineProfile(
        dtype=dtype,
        dtype_reason=why,
        kv_cache_dtype=choose_kv_cache_dtype(settings.kv_cache_dtype, gpu),
        attention_backend=backend,
        device="cpu" if gpu is None else f"cuda ({gpu.product}, CC {gpu.major}.{gpu.minor})",
    )


def batch_size(settings: Settings, profile: EngineProfile) -> int:
    """Sequences vLLM batches at once. Unset: 16 on CPU (one core does the work), 128 on a GPU, where batching
    windows is the win."""
    return settings.max_num_seqs or (16 if profile.device == "cpu" else 128)


def engine_args(settings: Settings, profile: EngineProfile) -> dict[str, Any]:
    """Keyword arguments for vLLM's AsyncEngineArgs (pure, unit-tested)."""
    args: dict[str, Any] = dict(  # noqa: C408  (keyword style reads as the vLLM arguments it is)
        model=settings.model_id,
        tokenizer=settings.model_id,
        dtype=profile.dtype,
        kv_cache_dtype=profile.kv_cache_dtype,
        max_model_len=settings.max_model_len,
        max_num_seqs=batch_size(settings, profile),
        limit_mm_per_prompt={"audio": 1},
        max_logprobs=128,  # language detection scores all ~100 language tokens in one step
        served_model_name=[settings.model_name],
        # CPU: no CUDA graphs. GPU: graphs on (vLLM's default), the faster path for the decoder.
        enforce_eager=profile.device == "cpu",
        enable_log_requests=False,
        logits_processors=[LOGITS_PROCESSOR],  # openai/whisper's timestamp rules, for timed requests
    )
    if profile.device != "cpu":
        args["gpu_memory_utilization"] = settings.gpu_memory_utilization
    if profile.attention_backend:
        args["attention_backend"] = profile.attention_backend
    return args


class WhisperEngine(EngineText):
    def __init__(self, settings: Settings, gpu: GpuInfo | None):
        self.settings = settings
        self.profile = build_profile(settings, gpu)
        self._engine: AsyncLLM | None = None

    @property
    def batch_size(self) -> int:
        return batch_size(self.settings, self.profile)

    @property
    def running(self) -> AsyncLLM:
        if self._engine is None:
            raise EngineDead("the engine is not running")
        return self._engine

    async def start(self) -> None:
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        if self.profile.device == "cpu":
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; plenty for Whisper's 448 tokens
            threads = self.settings.cpu_threads or usable_cores()
            sized = vllm_thread_env(threads, affinity_cores(), os.environ)
            if sized:
                log.info("vLLM CPU threads: %s (the container's CPU limit or CPU_THREADS)", sized)
            os.environ.update(sized)
        if not self.settings.use_flashinfer:
            os.environ["VLLM_USE_FLASHINFER_SAMPLER"] = "0"
        self._tokenizer = AutoTokenizer.from_pretrained(self.settings.model_id)
        self._vocab = WhisperVocab.from_tokenizer(self._tokenizer, all_codes())
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

    def pending_requests(self) -> int:
        """Requests the engine still holds (0 after every client's work finished or was aborted)."""
        if self._engine is None:
            return 0
        return int(self._engine.output_processor.get_num_unfinished_requests())

    async def _stream(
        self, samples: np.ndarray, decoder_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[RequestOutput]:
        """vLLM's outputs for one request as they grow; cancelling the consumer aborts the request."""
        from vllm.exceptions import VLLMValidationError
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        prompt = {
            "encoder_prompt": {"prompt": "", "multi_modal_data": {"audio": (samples, self.settings.sampling_rate)}},
            "decoder_prompt": TokensPrompt(prompt_token_ids=decoder_ids),
        }
        try:
            async for out in self.running.generate(prompt, params, request_id=uuid.uuid4().hex):  # type: ignore[arg-type]
                if out.outputs:
                    yield out
        except (ValueError, TypeError, VLLMValidationError) as exc:
            raise EngineError(f"engine rejected the request: {exc}") from exc
        except EngineDeadError as exc:
            raise EngineDead("the engine died") from exc
        except EngineGenerateError as exc:
            raise EngineError(f"the engine failed on this request: {exc.__cause__ or exc}") from exc

    async def _run(self, samples: np.ndarray, decoder_ids: list[int], params: SamplingParams) -> RequestOutput:
        final = None
        async for out in self._stream(samples, decoder_ids, params):
            final = out
        if final is None:
            raise EngineError("engine returned no output")
        return final

    async def detect_language(self, samples: np.ndarray) -> tuple[str, float]:
        """(language code, its probability) from one decoder step constrained to language tokens."""
        from vllm import SamplingParams

        ids = list(self.vocab.languages.values())
        params = SamplingParams(
            temperature=0.0,
            max_tokens=1,
            allowed_token_ids=ids,
            logprobs=len(ids),
            logprob_token_ids=ids,
            detokenize=False,
        )
        out = (await self._run(samples, [self.vocab.sot], params)).outputs[0]
        token = out.token_ids[0]
        scores = out.logprobs[0] if out.logprobs else {}
        return self.vocab.language_by_id[token], math.exp(scores[token].logprob) if token in scores else 0.0

    def _sampling(
        self, decoder_ids: list[int], temperature: float, max_tokens: int | None, seed: int | None = None
    ) -> SamplingParams:
        from vllm import SamplingParams

        budget = self.settings.max_model_len - len(decoder_ids)
        v = self.vocab
        timestamps = decoder_ids[-1] != v.notimestamps
        # openai/whisper's suppressions: task and prompt markers, no-speech; <|notimestamps|> when timed; and the
        # non-speech symbols of its default suppress_tokens="-1"
        suppressed = [
            t
            for t in (
                v.sot,
                v.startofprev,
                v.transcribe,
                v.translate,
                v.nospeech,
                v.notimestamps if timestamps else None,
                *v.non_speech,
            )
            if t is not None
        ]
        return SamplingParams(
            temperature=temperature,
            seed=seed,
            max_tokens=min(max_tokens or budget, budget),
            logprobs=0,
            detokenize=False,
            skip_special_tokens=False,
            logit_bias=dict.fromkeys(suppressed, -100.0),
            extra_args={EXTRA_ARG: {"opening": [decoder_ids[-1]], "timestamp_begin": v.timestamp_begin, "eot": v.eot}}
            if timestamps
            else None,
            # no_speech_prob: Whisper's probability of <|nospeech|> right after <|startoftranscript|>,
            # read from the top prompt logprobs (below the top NO_SPEECH_TOP_K it counts as 0)
            prompt_logprobs=NO_SPEECH_TOP_K if self.vocab.nospeech is not None else None,
        )

    def _no_speech(self, request_output: RequestOutput, decoder_ids: list[int]) -> float | None:
        rows = getattr(request_output, "prompt_logprobs", None)
        at = decoder_ids.index(self.vocab.sot) + 1  # row i holds the distribution that predicted token i
        if not rows or at >= len(rows) or rows[at] is None:
            return None
        entry = rows[at].get(self.vocab.nospeech)
        return math.exp(entry.logprob) if entry is not None else 0.0

    async def generate(
        self,
        samples: np.ndarray,
        decoder_ids: list[int],
        temperature: float,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> Generation:
        out = await self._run(samples, decoder_ids, self._sampling(decoder_ids, temperature, max_tokens, seed))
        first = out.outputs[0]
        tokens = list(first.token_ids)
        lps = [
            (step[t].logprob if step and t in step else 0.0)
            for t, step in zip(tokens, first.logprobs or [], strict=False)  # logprobs may be absent
        ]
        return Generation(tokens=tokens, logprobs=lps, no_speech_prob=self._no_speech(out, decoder_ids))

    async def generate_steps(
        self, samples: np.ndarray, decoder_ids: list[int], temperature: float
    ) -> AsyncIterator[tuple[list[int], list[float]]]:
        """(generated token ids, their logprobs) so far, each time they grow (for streaming responses)."""
        async for out in self._stream(samples, decoder_ids, self._sampling(decoder_ids, temperature, None)):
            first = out.outputs[0]
            tokens = list(first.token_ids)
            steps = first.logprobs or []
            yield (
                tokens,
                [(step[t].logprob if step and t in step else 0.0) for t, step in zip(tokens, steps, strict=False)],
            )
