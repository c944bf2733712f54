"""One transcription or translation request, end to end: decode, limit, chunk, detect, generate, segment."""
from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass, field

from .audio.chunk import Chunk, split_audio
from .audio.decode import decode_audio
from .config import Settings
from .engine.prompts import decoder_prompt
from .engine.segments import split_segments
from .engine.vllm_engine import Generation, WhisperEngine


class RequestError(ValueError):
    """The client's request cannot be served as sent (maps to a 400 with `param`)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param, self.code = param, code


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


@dataclass(frozen=True)
class TranscriptionJob:
    audio: bytes
    task: str = "transcribe"          # or "translate"
    language: str | None = None       # ISO 639-1, already normalized
    prompt: str | None = None
    temperature: float = 0.0
    timestamps: bool = False          # ask Whisper for timestamp tokens


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


class Transcriber:
    def __init__(self, engine: WhisperEngine, settings: Settings):
        self.engine, self.settings = engine, settings

    def decode(self, audio: bytes):
        samples = decode_audio(audio, self.settings.sampling_rate)
        duration = len(samples) / self.settings.sampling_rate
        limit = self.settings.max_audio_seconds
        if limit and duration > limit:
            raise RequestError(f"audio is {duration:.1f} s long; this server accepts at most {limit:g} s "
                               f"(MAX_AUDIO_SECONDS)", param="file", code="audio_too_long")
        return samples, duration

    async def language_for(self, job: TranscriptionJob, first: Chunk) -> tuple[str, float | None]:
        vocab = self.engine.vocab
        forced = self.settings.language_force or job.language
        if not vocab.multilingual:
            if forced not in (None, "en"):
                raise RequestError(f"model {self.settings.model_name} is English-only; language "
                                   f"{forced!r} is not supported", param="language",
                                   code="unsupported_language")
            return "en", None
        if forced is not None:
            return forced, None
        language, _, no_speech = await self.engine.detect_language(first.samples)
        return language, no_speech

    async def run(self, job: TranscriptionJob, samples=None, duration: float | None = None) -> Transcript:
        if samples is None:
            samples, duration = self.decode(job.audio)
        rate = self.settings.sampling_rate
        chunks = split_audio(samples, rate, self.settings.segment_duration_sec)
        language, first_no_speech = await self.language_for(job, chunks[0])
        previous = self.engine.encode_text(job.prompt) if job.prompt else None
        ids = decoder_prompt(self.engine.vocab, language=language, task=job.task,
                             timestamps=job.timestamps, previous=previous)
        # Every chunk runs at once: vLLM batches them; cancelling this task aborts all of them.
        gens: list[Generation] = await asyncio.gather(
            *(self.engine.generate(c.samples, ids, job.temperature) for c in chunks))
        segments: list[Segment] = []
        for chunk, gen in zip(chunks, gens):
            no_speech = gen.no_speech_prob
            if no_speech is None and chunk.index == 0:
                no_speech = first_no_speech
            for raw in split_segments(self.engine.vocab, gen.tokens, gen.logprobs, chunk.start,
                                      chunk.duration(rate), job.timestamps):
                text = self.engine.decode(raw.tokens)
                segments.append(Segment(
                    id=len(segments), seek=int(round(chunk.start * 100)), start=raw.start, end=raw.end,
                    text=text, tokens=raw.tokens, temperature=job.temperature,
                    avg_logprob=round(sum(raw.logprobs) / len(raw.logprobs), 6) if raw.logprobs else 0.0,
                    compression_ratio=compression_ratio(text),
                    no_speech_prob=round(no_speech, 6) if no_speech is not None else 0.0))
        text = "".join(s.text for s in segments).strip()
        return Transcript(task=job.task, language=language, duration=round(duration, 3), text=text,
                          segments=segments)
