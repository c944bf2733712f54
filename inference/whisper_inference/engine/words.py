"""Decoded tokens + token times -> OpenAI's `words: [{word, start, end}]` (pure functions).

Tokens are grouped into words as openai/whisper does (a new word at a leading space or a punctuation mark; by
character for languages written without spaces), punctuation is attached as OpenAI's whisper-1 returns it
(opening marks to the next word, closing marks to the previous one), and word edges are refined on the signal:
DTW over cross-attention tends to start a word early, absorbing the silence before it, so a start that falls in
silence moves forward to where the sound begins (and an end in silence moves back to where it stops).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# openai/whisper's timing.py defaults
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}
SENTENCE_END = ".。!！?？"

# Edge refinement on the signal: 10 ms hops of 20 ms frames; a frame is sound when it is within ENERGY_FLOOR_DB
# of the window's loud frames; sound spilling less than SPILL seconds into a word's span from a neighbour is the
# neighbour's; a refined word is at least MIN_WORD long.
HOP_SECONDS = 0.01
FRAME_SECONDS = 0.02
ENERGY_FLOOR_DB = -32.0
MIN_GAP = 0.1
SPILL = 0.15
MIN_WORD = 0.05


@dataclass
class Word:
    word: str
    start: float
    end: float

    def as_dict(self) -> dict[str, object]:
        return {"word": self.word, "start": self.start, "end": self.end}


@dataclass
class TokenWord:
    """A word before timing: its text and the positions of its tokens in the window's text tokens."""

    text: str
    first: int  # index of its first token
    count: int  # how many tokens


def _unicode_pieces(tokens: list[int], decode: Callable[[list[int]], str]) -> list[tuple[str, int, int]]:
    """(text, first token, token count) for runs of tokens that decode to whole characters."""
    pieces, run = [], []
    start = 0
    for i, t in enumerate(tokens):
        run.append(t)
        text = decode(run)
        if "\ufffd" not in text or i == len(tokens) - 1:
            pieces.append((text, start, len(run)))
            run, start = [], i + 1
    return pieces


def split_words(tokens: list[int], decode: Callable[[list[int]], str], language: str) -> list[TokenWord]:
    """Whisper's text tokens -> words (openai/whisper's split_to_word_tokens)."""
    pieces = _unicode_pieces(tokens, decode)
    if language in NO_SPACE_LANGUAGES:
        return [TokenWord(text, first, count) for text, first, count in pieces]
    words: list[TokenWord] = []
    for text, first, count in pieces:
        if not words or text.startswith(" ") or text.strip() in string.punctuation:
            words.append(TokenWord(text, first, count))
        else:
            words[-1].text += text
            words[-1].count += count
    return words


def merge_punctuation(words: list[Word]) -> list[Word]:
    """Opening marks join the next word, closing marks the previous one (openai/whisper's merge_punctuations).

    A mark keeps no time of its own: the word it joins keeps its times. The mark's slot is dropped.
    """
    out = [Word(w.word, w.start, w.end) for w in words]
    j = len(out) - 1
    for i in range(len(out) - 2, -1, -1):  # backwards, so a run of opening marks all reach the next word
        prev = out[i]
        if prev.word.startswith(" ") and prev.word.strip() and prev.word.strip() in PREPEND_PUNCTUATIONS:
            out[j].word = prev.word + out[j].word
            prev.word = ""
        else:
            j = i
    i = 0
    for j in range(1, len(out)):
        following = out[j]
        if not out[i].word.endswith(" ") and following.word and following.word in APPEND_PUNCTUATIONS:
            out[i].word += following.word
            following.word = ""
        else:
            i = j
    return [w for w in out if w.word]


def sound_runs(samples: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """Stretches of sound in a window, in seconds from its start: HOP_SECONDS steps whose FRAME_SECONDS frame is
    within ENERGY_FLOOR_DB of the window's loud frames, with gaps shorter than MIN_GAP closed (a stop consonant's
    closure is not a pause)."""
    hop, frame = max(1, int(rate * HOP_SECONDS)), max(1, int(rate * FRAME_SECONDS))
    if len(samples) < frame:
        return [(0.0, len(samples) / rate)]
    cs = np.concatenate([[0.0], np.cumsum(np.square(samples, dtype=np.float64))])
    starts = np.arange(0, len(samples) - frame + 1, hop)
    energy = (cs[starts + frame] - cs[starts]) / frame
    sound = energy > float(np.percentile(energy, 95)) * 10 ** (ENERGY_FLOOR_DB / 10) + 1e-12
    edges = np.flatnonzero(np.diff(np.concatenate([[0], sound.astype(np.int8), [0]])))
    runs: list[list[float]] = []
    for a, b in edges.reshape(-1, 2):
        t0, t1 = float(a) * HOP_SECONDS, float(b - 1) * HOP_SECONDS + FRAME_SECONDS
        if runs and t0 - runs[-1][1] < MIN_GAP:
            runs[-1][1] = t1
        else:
            runs.append([t0, t1])
    return [(a, b) for a, b in runs]


def refine_edges(words: list[Word], runs: list[tuple[float, float]], offset: float) -> None:
    """Snap word edges onto the sound (in place; `runs` from sound_runs, the window starting at `offset`).

    Within a word's span, a short stretch of sound at its start that began before it (the previous word's tail)
    or at its end that goes on after it (the next word's onset) is not the word's: it is dropped when the span
    holds other sound. The word then starts where its first remaining sound starts and ends where its last one
    ends. Continuous sound (real speech without pauses) leaves the edges as DTW put them.
    """
    for w in words:
        s, e = w.start - offset, w.end - offset
        inside = [(max(a, s), min(b, e), a < s, b > e) for a, b in runs if b > s and a < e]
        if len(inside) > 1 and inside[0][2] and inside[0][1] - inside[0][0] < SPILL:
            inside = inside[1:]
        if len(inside) > 1 and inside[-1][3] and inside[-1][1] - inside[-1][0] < SPILL:
            inside = inside[:-1]
        if not inside:
            continue
        start, end = inside[0][0], inside[-1][1]
        if end - start >= MIN_WORD:
            w.start, w.end = round(offset + start, 3), round(offset + end, 3)


def clamp_long_words(words: list[Word]) -> None:
    """openai/whisper's guard against DTW's long first words: a word longer than twice the median word (at most
    1.4 s) that opens the window or follows a sentence end starts later (in place)."""
    durations = [w.end - w.start for w in words if w.end > w.start]
    if not durations:
        return
    longest = 2 * min(0.7, float(np.median(durations)))
    for i, w in enumerate(words):
        opens = i == 0 or words[i - 1].word.rstrip()[-1:] in SENTENCE_END
        if opens and w.end - w.start > longest:
            w.start = round(max(w.start, w.end - longest), 3)


def timed_words(
    token_words: list[TokenWord],
    boundaries: np.ndarray,
    offset: float,
    limit: float,
) -> list[Word]:
    """Words with times in the upload's seconds: each word spans its tokens' boundaries, offset by the window's
    start and clamped to the window's end (`limit`)."""
    out = []
    for tw in token_words:
        start = offset + float(boundaries[tw.first])
        end = offset + float(boundaries[min(tw.first + tw.count, len(boundaries) - 1)])
        start, end = min(start, limit), min(max(end, start), limit)
        out.append(Word(tw.text, round(start, 3), round(end, 3)))
    return out


def window_words(
    tokens: list[int],
    boundaries: np.ndarray,
    decode: Callable[[list[int]], str],
    language: str,
    samples: np.ndarray,
    rate: int,
    offset: float,
) -> list[Word]:
    """One window's words: grouped, timed, clamped, refined on the signal, punctuation attached."""
    limit = offset + len(samples) / rate
    words = timed_words(split_words(tokens, decode, language), boundaries, offset, limit)
    clamp_long_words(words)
    refine_edges(words, sound_runs(samples, rate), offset)
    return [Word(w.word.strip(), w.start, w.end) for w in merge_punctuation(words) if w.word.strip()]


def ordered(words: list[Word]) -> list[Word]:
    """Words of consecutive windows, sorted, with no word starting before the previous one ends."""
    out = sorted(words, key=lambda w: w.start)
    for prev, w in zip(out, out[1:], strict=False):
        if w.start < prev.end:
            w.start = min(prev.end, w.end)
    return out
