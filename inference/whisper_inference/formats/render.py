"""Transcript -> the body of each OpenAI `response_format` (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ..languages import language_name
from ..transcriber import Plan, Transcript
from .cues import word_cues

ENCODER_POSITIONS_PER_SECOND = 50  # Whisper's encoder: 1500 positions for 30 s
RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def _clock(seconds: float, sep: str) -> str:
    ms = int(round(max(seconds, 0.0) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def usage(t: Transcript) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(t.duration)}  # OpenAI bills whole seconds, rounded up


def stream_usage(plan: Plan, output_tokens: int) -> dict[str, Any]:
    """transcript.text.done's usage, in tokens as OpenAI's event has it: the audio counts as Whisper's encoder
    positions (50 a second), the text input as the decoder prompt, the output as the text tokens generated."""
    audio = math.ceil(plan.duration * ENCODER_POSITIONS_PER_SECOND)
    text = len(plan.decoder_ids)
    return {
        "type": "tokens",
        "input_tokens": audio + text,
        "output_tokens": output_tokens,
        "total_tokens": audio + text + output_tokens,
        "input_token_details": {"audio_tokens": audio, "text_tokens": text},
    }


def to_json(t: Transcript) -> dict[str, Any]:
    body: dict[str, Any] = {"text": t.text, "usage": usage(t)}
    if t.logprobs is not None:
        body["logprobs"] = [lp.as_dict() for lp in t.logprobs]
    return body


def to_verbose_json(t: Transcript) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": t.task,
        "language": language_name(t.language),
        "duration": t.duration,
        "text": t.text,
        "segments": [asdict(s) for s in t.segments],
        "usage": usage(t),
    }
    if not t.show_segments:
        del body["segments"]
    if t.words is not None:
        body["words"] = [w.as_dict() for w in t.words]
    return body


def to_text(t: Transcript) -> str:
    return t.text + "\n"


def cues(t: Transcript, max_words: int = 0) -> list[tuple[float, float, str]]:
    """One cue per segment; with max_words (and the transcript's word timestamps), cues of at most that many words."""
    if max_words and t.words is not None:
        return word_cues(t.words, max_words)
    return [(s.start, s.end, s.text.strip()) for s in t.segments]


def to_srt(t: Transcript, max_words: int = 0) -> str:
    blocks = [
        f"{i}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n"
        for i, (start, end, text) in enumerate(cues(t, max_words), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(t: Transcript, max_words: int = 0) -> str:
    blocks = [f"{_clock(start, '.')} --> {_clock(end, '.')}\n{text}\n" for start, end, text in cues(t, max_words)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def render(t: Transcript, response_format: str, max_words_per_cue: int = 0) -> dict[str, Any] | str:
    if response_format in ("srt", "vtt"):
        return (to_srt if response_format == "srt" else to_vtt)(t, max_words_per_cue)
    renderers: dict[str, Callable[[Transcript], dict[str, Any] | str]] = {
        "json": to_json,
        "verbose_json": to_verbose_json,
        "text": to_text,
    }
    return renderers[response_format](t)
