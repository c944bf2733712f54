"""Whisper output tokens -> timed segments, offset by each window's real start."""

from __future__ import annotations

from dataclasses import dataclass, field

from .vocab import TIMESTAMP_STEP, WhisperVocab


@dataclass
class RawSegment:
    start: float
    end: float
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


def split_segments(
    vocab: WhisperVocab,
    tokens: list[int],
    logprobs: list[float] | None,
    window_start: float,
    window_duration: float,
    timestamps: bool,
) -> list[RawSegment]:
    """Cut generated tokens into segments at Whisper's timestamp tokens.

    Whisper writes `<|t0|> text <|t1|>` per segment, often repeating the boundary
    (`<|t1|><|t1|>`). Text with no opening timestamp starts where the previous segment ended;
    text with no closing timestamp ends at the end of the window. Without timestamps the window is
    one segment. Times are clamped to the window and then offset by its start in the upload.
    """
    lps = logprobs if logprobs is not None and len(logprobs) == len(tokens) else [0.0] * len(tokens)
    if not timestamps:
        seg = RawSegment(0.0, window_duration)
        for t, lp in zip(tokens, lps, strict=True):
            if vocab.is_text(t):
                seg.tokens.append(t)
                seg.logprobs.append(lp)
        raw = [seg] if seg.tokens else []
    else:
        raw = []
        current: RawSegment | None = None
        last_end = 0.0
        for t, lp in zip(tokens, lps, strict=True):
            if vocab.is_timestamp(t):
                time = (t - vocab.timestamp_begin) * TIMESTAMP_STEP
                if current is not None and current.tokens:
                    current.end = time
                    raw.append(current)
                    last_end, current = time, None
                else:  # an opening timestamp (a repeated boundary replaces the previous opening)
                    current = RawSegment(time, time)
            elif vocab.is_text(t):
                if current is None:
                    current = RawSegment(last_end, last_end)
                current.tokens.append(t)
                current.logprobs.append(lp)
        if current is not None and current.tokens:
            current.end = window_duration
            raw.append(current)
    out = []
    floor = 0.0
    for seg in raw:
        start = min(max(seg.start, floor), window_duration)
        end = min(max(seg.end, start), window_duration)
        floor = end
        out.append(RawSegment(round(window_start + start, 3), round(window_start + end, 3), seg.tokens, seg.logprobs))
    return out


def decoded_until(vocab: WhisperVocab, tokens: list[int]) -> float | None:
    """Where a timed decode that ended cleanly stopped listening, in seconds from the window's start.

    openai/whisper reads the same signal to seek: the window's text ends on a timestamp and then <|endoftext|>,
    so audio after that timestamp was not transcribed (Whisper leaves out speech it hears cut off at the window's
    end, and sometimes a voice it takes for background). None when the decode did not end that way: hit the
    token budget, or its last segment was left open (it then covers the window to its end).
    """
    body = [t for t in tokens if t != vocab.eot]
    if len(body) == len(tokens) or not body or not vocab.is_timestamp(body[-1]):
        return None
    return (body[-1] - vocab.timestamp_begin) * TIMESTAMP_STEP
