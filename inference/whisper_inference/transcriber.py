"""One transcription or translation request, end to end: decode, limit, window, detect, generate, segment."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .audio.vad import SileroVad, VadOptions, find_speech, speech_windows
from .audio.windows import Window, is_quiet, speech_level, split_windows
from .audio.worker import DecodePool
from .config import Settings
from .engine.alignment import Aligner, align_words
from .engine.interface import Engine, Generation
from .engine.prompts import decoder_prompt
from .engine.repetition import is_loop
from .engine.segments import RawSegment, decoded_until, split_segments
from .engine.token_logprobs import TokenLogprob
from .engine.words import Word

T = TypeVar("T")
# openai/whisper's defaults: a window whose first step says "no speech" this confidently and whose
# text is this unlikely is silence, and its text a hallucination.
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
# temperature fallback (OpenAI: "if set to 0, the model will use log probability to automatically
# increase the temperature until certain thresholds are hit"), with openai/whisper's logprob threshold; loops are
# told by repeated token runs (engine/repetition.py), not by openai/whisper's whole-window compression ratio
FALLBACK_SEED = 0
FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)
# Long audio is cut in a pause found in the last seconds of each window (see audio/windows.py).
SPLIT_SEARCH_SECONDS = 5.0
# A timed window that stopped early is decoded again from where it stopped (openai/whisper's seek, kept
# concurrent): at most this many more rounds, and only for a rest this long that is not silence.
MAX_REST_ROUNDS = 2
MIN_REST_SECONDS = 1.0


class RequestError(ValueError):
    """The client's request cannot be served as sent (the api layer answers 400 naming `param`)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class UnsupportedLanguage(RequestError):
    """The model cannot transcribe the language asked for."""


@dataclass
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass
class Transcript:
    task: str
    language: str
    duration: float
    text: str
    segments: list[Segment] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None  # include[]=logprobs: every text token, in order
    words: list[Word] | None = None  # timestamp_granularities[]=word
    show_segments: bool = True  # verbose_json lists segments unless only words were asked for


@dataclass(frozen=True)
class TranscriptionJob:
    audio: bytes
    task: str = "transcribe"  # or "translate"
    language: str | None = None  # ISO 639-1, already normalized
    prompt: str | None = None
    temperature: float = 0.0
    show_timestamps: bool = False  # the response format shows segment times
    logprobs: bool = False  # include[]=logprobs
    words: bool = False  # align words (timestamp_granularities[]=word, or word cues in srt/vtt)
    show_segments: bool = True
    vad: VadOptions | None = None  # chunking_strategy: windows from speech regions, silence skipped


@dataclass(frozen=True)
class Delta:
    """One piece of a streamed transcript: its text, and the tokens that made it (with include[]=logprobs)."""

    text: str
    tokens: int  # text tokens in this delta (usage)
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Plan:
    """A decoded upload, ready for the engine."""

    duration: float
    windows: list[Window]
    language: str
    decoder_ids: list[int]
    timed: bool = False  # decode with timestamp tokens (see timed_decoding)
    speech_level: float = 0.0  # the upload's loud-frame energy: what "not silence" means for this audio
    # this request's windows in the engine at once (MAX_WINDOWS_PER_REQUEST): a long upload leaves room in vLLM's
    # batch for short requests instead of queueing them behind all its windows
    window_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2**30))


def mean_logprob(logprobs: list[float], empty: float = 0.0) -> float:
    return sum(logprobs) / len(logprobs) if logprobs else empty


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 4) if data else 0.0


def wants_timestamps(setting: str, response_format: str) -> bool:
    """TIMESTAMPS=segments forces them, none disables them, auto asks only for timed formats."""
    if setting == "segments":
        return True
    if setting == "none":
        return False
    return response_format in ("verbose_json", "srt", "vtt")


def timed_decoding(setting: str, requested: bool, windows: int) -> bool:
    """Whether to decode with timestamp tokens: when the response shows them (`requested`, from
    wants_timestamps), and under TIMESTAMPS=auto also for audio of more than one window, whatever the format:
    only a timed decode says where Whisper stopped listening, so the rest of a window can be decoded again."""
    return requested or (setting == "auto" and windows > 1)


@dataclass(frozen=True)
class Attempt:
    """One decode of a window at one temperature, judged."""

    generation: Generation
    temperature: float
    logprobs: list[float]  # of its text tokens
    loops: bool

    @property
    def failed(self) -> bool:
        """Retry hotter when the output loops or is unlikely, unless the window is silence."""
        silence = self.generation.no_speech_prob is not None and self.generation.no_speech_prob > NO_SPEECH_THRESHOLD
        return not silence and (self.loops or mean_logprob(self.logprobs) < LOGPROB_THRESHOLD)


def best_attempt(attempts: list[Attempt]) -> Attempt:
    """Of attempts that all failed, a non-looping one before any loop (as faster-whisper), then the best mean
    logprob, then the coolest. Speech that really repeats a sentence is not a loop here (engine/repetition.py), so
    it is kept over the hot attempts, which are often gibberish."""
    return max(attempts, key=lambda a: (not a.loops, mean_logprob(a.logprobs, float("-inf")), -a.temperature))


async def all_or_none(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run coroutines concurrently; when one fails (or the caller is cancelled), cancel the others and re-raise.
    asyncio.gather alone leaves the siblings of a failed window running in the engine."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def capped_prompt(prompt: str, max_chars: int) -> str:
    """The end of the prompt, at most MAX_PROMPT_CHARS: Whisper keeps only the last 223 prompt tokens anyway, and
    tokenizing is cut short before it costs more than that."""
    return prompt[-max_chars:] if max_chars else ""


def is_silence(no_speech_prob: float | None, raw: list[RawSegment]) -> bool:
    avg = mean_logprob([lp for seg in raw for lp in seg.logprobs])
    return no_speech_prob is not None and no_speech_prob > NO_SPEECH_THRESHOLD and avg < LOGPROB_THRESHOLD


class Transcriber:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        audio: DecodePool | None = None,
        on_redecode: Callable[[], None] | None = None,
    ):
        self.engine, self.settings = engine, settings
        self.redecoded = 0  # windows decoded again at a higher temperature
        self.on_redecode = on_redecode  # the server counts them in whisper_windows_redecoded_total
        self.audio = audio or DecodePool(
            settings.audio_limits, settings.sampling_rate, settings.decode_workers, settings.decode_timeout_seconds
        )
        # word timestamps: the same checkpoint in torch, loaded on the first request that asks for words
        device = None if settings.alignment_device == "auto" else settings.alignment_device
        self.aligner = Aligner(settings.model_id, device)
        self.vad = SileroVad()

    async def language_for(self, job: TranscriptionJob, first: Window) -> str:
        vocab = self.engine.vocab
        forced = self.settings.language_force or job.language
        if not vocab.multilingual:
            if forced not in (None, "en"):
                raise UnsupportedLanguage(
                    f"model {self.settings.model_name} is English-only; language {forced!r} is not supported",
                    param="language",
                )
            return "en"
        if forced is not None:
            return forced
        return (await self.engine.detect_language(first.samples))[0]

    async def plan(self, job: TranscriptionJob) -> Plan:
        samples = await self.audio.decode(job.audio)  # within the limits (audio/limits.py), in a worker process
        rate = self.settings.sampling_rate
        duration = len(samples) / rate
        windows = await self.windows(samples, job.vad)
        # no speech found (VAD): nothing will be decoded, the language only shapes the (unused) prompt
        language = await self.language_for(job, windows[0] if windows else Window(0.0, samples[: 30 * rate]))
        previous = (
            self.engine.encode_text(capped_prompt(job.prompt, self.settings.max_prompt_chars)) if job.prompt else None
        )
        timed = timed_decoding(self.settings.timestamps_policy, job.show_timestamps, len(windows))
        ids = decoder_prompt(self.engine.vocab, language=language, task=job.task, timestamps=timed, previous=previous)
        cap = self.settings.max_windows_per_request
        cap = max(1, self.engine.batch_size // 2) if cap is None else cap
        slots = asyncio.Semaphore(cap or 2**30)
        return Plan(duration, windows, language, ids, timed, speech_level(samples, rate), slots)

    async def windows(self, samples: np.ndarray, vad: VadOptions | None) -> list[Window]:
        rate, size = self.settings.sampling_rate, self.settings.window_seconds
        if vad is None:
            return split_windows(samples, rate, size, SPLIT_SEARCH_SECONDS)
        regions = await asyncio.to_thread(find_speech, self.vad, samples, rate, vad)
        return speech_windows(samples, rate, regions, size, SPLIT_SEARCH_SECONDS)

    async def generate(self, window: Window, plan: Plan, temperature: float) -> tuple[Generation, float]:
        """One window; at temperature 0, fall back to hotter decoding while the output looks broken.

        When every temperature fails, keep the likeliest attempt among those that do not loop (as
        faster-whisper does) rather than the last, hottest one.
        """
        ladder = (temperature, *FALLBACK_TEMPERATURES) if temperature == 0 else (temperature,)
        attempts: list[Attempt] = []
        vocab = self.engine.vocab
        for t in ladder:
            if attempts:
                self.redecoded += 1
                if self.on_redecode is not None:
                    self.on_redecode()
            # fallback attempts sample with a fixed seed: the same upload gives the same transcript every time
            seed = FALLBACK_SEED if attempts else None
            async with plan.window_slots:
                gen = await self.engine.generate(window.samples, plan.decoder_ids, t, seed=seed)
            text = [(tok, lp) for tok, lp in zip(gen.tokens, gen.logprobs, strict=False) if vocab.is_text(tok)]
            attempt = Attempt(gen, t, [lp for _, lp in text], is_loop([tok for tok, _ in text]))
            if not attempt.failed:
                return gen, t
            attempts.append(attempt)
        best = best_attempt(attempts)
        return best.generation, best.temperature

    def rest(self, window: Window, tokens: list[int], plan: Plan) -> Window | None:
        """The part of a window its timed decode left out, when that part holds sound worth another pass."""
        until = decoded_until(self.engine.vocab, tokens)
        rate = self.settings.sampling_rate
        if until is None:
            return None
        cut = int(round(until * rate))
        samples = window.samples[cut:]
        if len(samples) < MIN_REST_SECONDS * rate or is_quiet(samples, rate, plan.speech_level):
            return None
        return Window(round(window.start + cut / rate, 3), samples)

    def delta(self, text: str, tokens: list[int], logprobs: list[float], with_logprobs: bool) -> Delta:
        pairs = [(t, lp) for t, lp in zip(tokens, logprobs, strict=False) if self.engine.vocab.is_text(t)]
        lps = self.engine.token_logprobs([t for t, _ in pairs], [lp for _, lp in pairs]) if with_logprobs else None
        return Delta(text, len(pairs), lps)

    async def run(self, job: TranscriptionJob, plan: Plan | None = None) -> Transcript:
        plan = plan or await self.plan(job)
        rate = self.settings.sampling_rate
        decoded: list[tuple[Window, Generation, float, list[RawSegment]]] = []
        windows = plan.windows
        for round_ in range(1 + MAX_REST_ROUNDS):
            # Every window runs at once: vLLM batches them; cancelling this task, or one window failing, aborts all.
            results = await all_or_none([self.generate(c, plan, job.temperature) for c in windows])
            rests = []
            for window, (gen, temperature) in zip(windows, results, strict=True):
                raw = split_segments(
                    self.engine.vocab, gen.tokens, gen.logprobs, window.start, window.duration(rate), plan.timed
                )
                if is_silence(gen.no_speech_prob, raw):
                    continue
                decoded.append((window, gen, temperature, raw))
                if plan.timed and round_ < MAX_REST_ROUNDS and (rest := self.rest(window, gen.tokens, plan)):
                    rests.append(rest)
            if not rests:
                break
            windows = rests
        decoded.sort(key=lambda d: d[0].start)
        segments: list[Segment] = []
        for window, gen, temperature, raw in decoded:
            for r in raw:
                text = self.engine.detokenize(r.tokens)
                segments.append(
                    Segment(
                        id=len(segments),
                        seek=int(round(window.start * 100)),
                        start=r.start,
                        end=r.end,
                        text=text,
                        tokens=r.tokens,
                        temperature=temperature,
                        avg_logprob=round(mean_logprob(r.logprobs), 6),
                        compression_ratio=compression_ratio(text),
                        no_speech_prob=round(gen.no_speech_prob or 0.0, 6),
                    )
                )
        text = "".join(s.text for s in segments).strip()
        words = None
        if job.words:
            prefix = decoder_prompt(self.engine.vocab, language=plan.language, task=job.task, timestamps=False)
            spans = [(w.samples, w.start, [t for r in raw for t in r.tokens]) for w, _, _, raw in decoded]
            words = await asyncio.to_thread(
                align_words,
                self.aligner,
                spans,
                prefix,
                self.engine.vocab.eot,
                self.engine.detokenize,
                plan.language,
                rate,
            )
        logprobs = None
        if job.logprobs:
            pairs = [(t, lp) for *_, raw in decoded for r in raw for t, lp in zip(r.tokens, r.logprobs, strict=True)]
            logprobs = self.engine.token_logprobs([t for t, _ in pairs], [lp for _, lp in pairs])
        return Transcript(
            task=job.task,
            language=plan.language,
            duration=round(plan.duration, 3),
            text=text,
            segments=segments,
            logprobs=logprobs,
            words=words,
            show_segments=job.show_segments,
        )

    async def stream(self, job: TranscriptionJob, plan: Plan) -> AsyncIterator[Delta]:
        """Text deltas in order: window 0 token by token while later windows already run; a timed window that
        stopped early has its rest decoded (and streamed) before the next window's text."""

        async def produce(window: Window, queue: asyncio.Queue[tuple[list[int], list[float]] | None]) -> None:
            try:
                async with plan.window_slots:
                    async for step in self.engine.generate_steps(window.samples, plan.decoder_ids, job.temperature):
                        queue.put_nowait(step)
            finally:
                queue.put_nowait(None)

        queues: list[asyncio.Queue[tuple[list[int], list[float]] | None]] = [asyncio.Queue() for _ in plan.windows]
        tasks = [asyncio.create_task(produce(c, q)) for c, q in zip(plan.windows, queues, strict=True)]
        try:
            emitted = ""
            for window, queue, task in list(zip(plan.windows, queues, tasks, strict=True)):
                for round_ in range(1 + MAX_REST_ROUNDS):
                    tokens: list[int] = []
                    prefix, sent = emitted, 0
                    while (item := await queue.get()) is not None:
                        tokens, lps = item
                        text = self.engine.detokenize(tokens)
                        if text.endswith("\ufffd"):
                            continue  # a multi-byte character is not complete yet
                        full = (prefix + text) if prefix else text.lstrip()
                        if len(full) > len(emitted) and full.startswith(emitted):
                            yield self.delta(full[len(emitted) :], tokens[sent:], lps[sent:], job.logprobs)
                            emitted, sent = full, len(tokens)
                    await task  # re-raise an engine error from this window
                    rest = self.rest(window, tokens, plan) if plan.timed and round_ < MAX_REST_ROUNDS else None
                    if rest is None:
                        break
                    window, queue = rest, asyncio.Queue()
                    task = asyncio.create_task(produce(rest, queue))
                    tasks.append(task)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
