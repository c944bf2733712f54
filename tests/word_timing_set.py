"""Speech whose word boundaries are known: words synthesized one at a time with espeak-ng, joined with known gaps.

Each word is synthesized alone, trimmed to where its sound starts and stops (the truth), resampled to 16 kHz and
placed after a gap drawn from a seeded generator, so every recording is reproducible. Several voices and speeds;
the last recording is longer than one 30 s window.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

RATE = 16000
SENTENCES = [
    "the quick brown fox jumps over the lazy dog near the river bank",
    "she sells sea shells by the sea shore every summer morning",
    "please call stella and ask her to bring these things with her from the store",
    "we need six spoons of fresh snow peas and five thick slabs of blue cheese",
    "a large group of students walked slowly across the old stone bridge",
    "the weather today is cold and windy with a chance of rain in the evening",
]
# (voice, words per minute): espeak-ng's stock English voices at slow, normal and fast speeds
VOICES = [("en-us", 140), ("en-gb", 175), ("en-us+f3", 200), ("en-gb-x-rp", 160), ("en-us+m3", 220)]


@dataclass
class Recording:
    name: str
    voice: str
    speed: int
    path: Path
    words: list[tuple[str, float, float]]  # (word, start, end) in seconds

    @property
    def text(self) -> str:
        return " ".join(w for w, _, _ in self.words)


def _speak(word: str, voice: str, speed: int) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", f.name, word], check=True)
        audio, rate = sf.read(f.name, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    audio = resample_poly(audio, RATE, rate).astype(np.float32) if rate != RATE else audio
    # the word's sound: 5 ms frames within 40 dB of its loudest frame
    frame = RATE // 200
    energy = np.array([np.mean(audio[i : i + frame] ** 2) for i in range(0, len(audio) - frame, frame)])
    loud = np.flatnonzero(energy > energy.max() * 1e-4)
    return audio[loud[0] * frame : (loud[-1] + 1) * frame]


def _build(name: str, words: list[str], voice: str, speed: int, seed: int, out: Path) -> Recording:
    rng = np.random.default_rng(seed)
    parts, truth, t = [np.zeros(int(0.5 * RATE), np.float32)], [], 0.5
    for w in words:
        audio = _speak(w, voice, speed)
        truth.append((w, round(t, 3), round(t + len(audio) / RATE, 3)))
        gap = float(rng.uniform(0.1, 0.5)) if rng.random() > 0.15 else float(rng.uniform(0.8, 1.5))
        parts += [audio, np.zeros(int(gap * RATE), np.float32)]
        t += len(audio) / RATE + int(gap * RATE) / RATE
    samples = np.concatenate(parts)
    samples = 0.5 * samples / np.abs(samples).max()
    path = out / f"{name}.wav"
    sf.write(path, samples, RATE, subtype="PCM_16")
    return Recording(name, voice, speed, path, truth)


def build_set(out: Path) -> list[Recording]:
    """The recordings (cached in `out` with their truth in words.json)."""
    out.mkdir(parents=True, exist_ok=True)
    index = out / "words.json"
    if index.is_file():
        rows = json.loads(index.read_text())
        return [
            Recording(r["name"], r["voice"], r["speed"], out / r["file"], [tuple(w) for w in r["words"]]) for r in rows
        ]
    recs = []
    for i, (voice, speed) in enumerate(VOICES):
        words = " ".join(SENTENCES[i % len(SENTENCES)] for _ in range(1)).split()
        recs.append(_build(f"{voice}-{speed}", words, voice, speed, seed=i, out=out))
    long_words = " ".join(SENTENCES).split()  # ~75 words, ~45 s: spans two windows
    recs.append(_build("long-en-us-175", long_words, "en-us", 175, seed=99, out=out))
    index.write_text(
        json.dumps(
            [{"name": r.name, "voice": r.voice, "speed": r.speed, "file": r.path.name, "words": r.words} for r in recs]
        )
    )
    return recs


def score(truth: list[tuple[str, float, float]], words: list[dict], tolerance: float = 0.1) -> dict:
    """Pair predicted words with true words in order (an edit alignment of the normalized texts: equal words and
    one-for-one substitutions pair up; words the model dropped or added do not) and measure over the pairs: the
    share whose predicted midpoint lies inside [start - tolerance, end + tolerance], the median absolute start and
    end errors. `matched` / `words` says how much of the set the measure covers (recognition, not timing)."""
    import re
    from difflib import SequenceMatcher

    def norm(s: str) -> str:
        return re.sub(r"[^a-z']", "", s.lower())

    ref = [norm(w) for w, _, _ in truth]
    hyp = [norm(w["word"]) for w in words]
    pairs = []  # equal words, and substitutions of as many words for as many (a misheard word is still timed)
    for op, a0, a1, b0, b1 in SequenceMatcher(a=ref, b=hyp, autojunk=False).get_opcodes():
        if op == "equal" or (op == "replace" and a1 - a0 == b1 - b0):
            pairs += [(a0 + k, b0 + k) for k in range(a1 - a0)]
    inside, starts, ends = 0, [], []
    for i, j in pairs:
        _, ts, te = truth[i]
        ps, pe = words[j]["start"], words[j]["end"]
        mid = (ps + pe) / 2
        inside += ts - tolerance <= mid <= te + tolerance
        starts.append(abs(ps - ts))
        ends.append(abs(pe - te))
    return {
        "words": len(truth),
        "matched": len(pairs),
        "midpoint_inside": inside / len(pairs) if pairs else 0.0,
        "median_start_error": float(np.median(starts)) if starts else float("inf"),
        "median_end_error": float(np.median(ends)) if ends else float("inf"),
        "mean_signed_start_error": float(np.mean([words[j]["start"] - truth[i][1] for i, j in pairs]))
        if pairs
        else 0.0,
        "start_errors": starts,
        "end_errors": ends,
    }
