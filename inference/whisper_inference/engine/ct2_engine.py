"""Whisper on CTranslate2, int8 on CPU: the engine for CPU pools (ENGINE=ctranslate2), behind the Engine protocol
of engine/interface.py, as the vLLM engine. Its process imports neither torch nor transformers (its tokenizer is
engine/tokenizer.py; a conversion runs in a child process): only word timestamps load torch, in the aligner.

Windows from all requests are batched (engine/batcher.py); each window's audio is encoded once and the encoder
output reused by temperature fallback (language detection hears the window padded otherwise: audio/mel.py).
Timestamps follow CTranslate2's own rules (a timed prompt ends at the task token, and CTranslate2 forces the first
token to be a timestamp, at most 1 s in).
CTranslate2's Whisper returns a sequence score, not per-token log-probabilities, and whole sequences, not steps:
each token's logprob is the sequence's mean (what faster-whisper's avg_logprob is), and a stream gets a window's
text at once. Every window is decoded timed unless TIMESTAMPS=none (see ct2_prompt).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import numpy as np

from ..audio.mel import log_mel
from ..config import Settings
from ..cpu import usable_cores
from ..languages import all_codes
from .batcher import Batcher, BatchKey, EncoderCache, Work
from .ct2_model import find_or_convert
from .interface import EngineProfile, Generation
from .text import EngineError, EngineText
from .tokenizer import WhisperTokenizer
from .vocab import WhisperVocab

log = logging.getLogger(__name__)
# MAX_NUM_SEQS unset. On CPU a bigger batch is not faster (the encoder is compute-bound either way) but its working
# memory grows with it (make bench: README, CPU engines).
DEFAULT_MAX_BATCH = 8


def threads_for(settings: Settings) -> tuple[int, str]:
    if settings.cpu_threads:
        return settings.cpu_threads, "CPU_THREADS"
    return usable_cores(), "the container's CPU limit or affinity"


def ct2_prompt(vocab: WhisperVocab, decoder_ids: list[int], always_timed: bool) -> list[int]:
    """The transcriber's prompt for CTranslate2, which applies the timestamp rules itself when the prompt holds no
    <|notimestamps|>: a timed prompt's closing <|0.00|> (vLLM needs the first timestamp supplied) is dropped, and
    with `always_timed` so is <|notimestamps|>. Timed decoding hears the synthetic voices of the benchmark better
    (base: "the quick brown fox jump over" where untimed gives "the quick round fox jump, so verve"); the
    timestamp tokens it adds are not text, so an untimed response is unchanged by them."""
    if decoder_ids and (
        decoder_ids[-1] == vocab.timestamp_begin or (always_timed and decoder_ids[-1] == vocab.notimestamps)
    ):
        return decoder_ids[:-1]
    return list(decoder_ids)


def batch_key(prompt: list[int], sot: int, temperature: float, max_length: int, seed: int | None = None) -> BatchKey:
    at = prompt.index(sot)
    return BatchKey("generate", at, len(prompt) - at, float(temperature), max_length, seed if temperature > 0 else None)


def ended_cleanly(prompt_len: int, generated: int, max_length: int, max_tokens: int | None) -> bool:
    """CTranslate2 leaves <|endoftext|> out of its results: a sequence that stopped short of every limit ended on
    it. (The transcriber reads that end to know where a timed window stopped listening.)"""
    if max_tokens is not None and generated >= max_tokens:
        return False
    return prompt_len + generated < max_length - 1


class CT2Engine(EngineText):
    # include[]=logprobs: CTranslate2 scores a whole window, so every token carries the window's mean
    def __init__(self, settings: Settings):
        self.settings = settings
        self.threads, why = threads_for(settings)
        self.profile = EngineProfile(
            dtype="int8",
            dtype_reason=f"ctranslate2 int8 on {self.threads} CPU threads (from {why})",
            kv_cache_dtype="n/a",
            attention_backend=None,
            device="cpu",
        )
        self.max_batch = settings.max_num_seqs or DEFAULT_MAX_BATCH
        self._model: Any = None
        self._batcher: Batcher | None = None
        self._cache = EncoderCache(capacity=2 * self.max_batch)
        self._suppress: list[int] = []

    @property
    def batch_size(self) -> int:
        """Windows run in one batch at most (MAX_WINDOWS_PER_REQUEST's default is derived from it)."""
        return self.max_batch

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        import ctranslate2

        path = find_or_convert(self.settings.model_id)
        # tokenizers alone, not transformers: its import would bring torch into this process
        self._tokenizer = WhisperTokenizer.from_model(self.settings.model_id, path)
        v = self._vocab = WhisperVocab.from_tokenizer(self._tokenizer, all_codes())
        log.info(
            "loading CTranslate2 model %s: int8, %d threads, batches of up to %d", path, self.threads, self.max_batch
        )
        self._model = ctranslate2.models.Whisper(
            str(path), device="cpu", compute_type="int8", inter_threads=1, intra_threads=self.threads
        )
        # -1: the model's own non-speech symbols; then the task and prompt markers, as the vLLM engine suppresses
        self._suppress = [-1] + [
            t for t in (v.sot, v.startofprev, v.transcribe, v.translate, v.nospeech) if t is not None
        ]
        self._batcher = Batcher(self._run_batch, self.max_batch, name="ct2-batcher")

    def shutdown(self) -> None:
        if self._batcher is not None:
            self._batcher.stop()
            self._batcher = None
        self._model = None

    @property
    def alive(self) -> bool:
        return self._model is not None and self._batcher is not None and self._batcher.alive

    def pending_requests(self) -> int:
        return self._batcher.pending if self._batcher is not None else 0

    # --- the worker thread ---

    def _encode(self, items: list[Work], padding: Literal["features", "audio"] = "features") -> np.ndarray:
        """Encoder outputs of the items' windows, one batch: [len(items), frames, width]."""
        import ctranslate2

        mels = np.stack([log_mel(w.samples, self._model.n_mels, padding=padding) for w in items])
        return np.array(self._model.encode(ctranslate2.StorageView.from_array(mels), to_cpu=True))

    def _encoded(self, items: list[Work]) -> Any:
        import ctranslate2

        missing = [w for w in items if self._cache.get(w.samples) is None]
        if missing:
            for w, enc in zip(missing, self._encode(missing), strict=True):
                self._cache.put(w.samples, enc)
        # an entry evicted since (the cache is smaller than a burst of windows) is encoded again, alone
        outputs = []
        for w in items:
            enc = self._cache.get(w.samples)
            outputs.append(self._encode([w])[0] if enc is None else enc)
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(outputs)))

    def _detect(self, items: list[Work]) -> Sequence[Any]:
        """Language detection hears the window as openai/whisper pads it (faster-whisper's padding took the German
        fixture for Latin), so its encoding is its own, not the cached one the window's decoding uses."""
        import ctranslate2

        features = self._encode(items, padding="audio")
        return self._model.detect_language(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)))

    def _run_batch(self, key: BatchKey, items: list[Work]) -> Sequence[Any]:
        if key.kind == "detect":
            return self._detect(items)
        features = self._encoded(items)
        t = key.temperature
        if t > 0 and key.seed is not None:
            import ctranslate2

            # one worker thread runs every batch, so the seed set here is the one this batch samples with
            ctranslate2.set_random_seed(key.seed)
        return self._model.generate(
            features,
            [w.prompt for w in items],
            beam_size=1,
            max_length=key.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            sampling_topk=1 if t == 0 else 0,
            sampling_temperature=t if t > 0 else 1.0,
        )

    # --- the event loop ---

    async def _submit(self, key: BatchKey, samples: np.ndarray, prompt: list[int]) -> Any:
        if self._batcher is None:
            raise EngineError("the engine is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any) -> None:
            try:
                loop.call_soon_threadsafe(_resolve, future, result)
            except RuntimeError:  # the loop closed: nobody waits any more
                pass

        work = Work(key, samples, prompt, settle)
        self._batcher.submit(work)
        try:
            return await future
        except asyncio.CancelledError:
            self._batcher.cancel(work)
            raise

    async def detect_language(self, samples: np.ndarray) -> tuple[str, float]:
        ranked = await self._submit(BatchKey("detect"), samples, [])
        for token, prob in ranked:
            code = token.strip("<|>")
            if code in self.vocab.languages:
                return code, float(prob)
        raise EngineError("the model detected no known language")

    async def generate(
        self,
        samples: np.ndarray,
        decoder_ids: list[int],
        temperature: float,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> Generation:
        v = self.vocab
        prompt = ct2_prompt(v, decoder_ids, always_timed=self.settings.timestamps_policy != "none")
        limit = self.settings.max_model_len
        max_length = min(limit, len(prompt) + max_tokens + 1) if max_tokens else limit
        result = await self._submit(batch_key(prompt, v.sot, temperature, max_length, seed), samples, prompt)
        tokens = list(result.sequences_ids[0])
        if max_tokens is not None:
            tokens = tokens[:max_tokens]
        if ended_cleanly(len(prompt), len(tokens), max_length, max_tokens):
            tokens.append(v.eot)
        score = float(result.scores[0]) if result.scores else 0.0
        no_speech = result.no_speech_prob if v.nospeech is not None else None
        return Generation(tokens=tokens, logprobs=[score] * len(tokens), no_speech_prob=no_speech)

    async def generate_steps(
        self, samples: np.ndarray, decoder_ids: list[int], temperature: float
    ) -> AsyncIterator[tuple[list[int], list[float]]]:
        """(tokens, logprobs) of the whole window at once: CTranslate2 does not stream a window's tokens."""
        gen = await self.generate(samples, decoder_ids, temperature)
        yield gen.tokens, gen.logprobs


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(EngineError(f"ctranslate2 failed: {result}"))
    else:
        future.set_result(result)
