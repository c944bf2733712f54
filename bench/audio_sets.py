"""The benchmark's audio sets, from a directory of clips with their texts (NAME.wav or NAME.flac + NAME.txt):
the English clips as short requests, and two long recordings of them (about 75 s each) with pauses between."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16000
CLIPS = ("jfk", "en1", "en2", "en3")
LONG_SECONDS = 75.0


@dataclass(frozen=True)
class Item:
    name: str
    samples: np.ndarray  # 16 kHz mono float32
    text: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE


def read_clip(directory: Path, name: str) -> Item:
    import soundfile as sf

    path = next(p for ext in ("wav", "flac") if (p := directory / f"{name}.{ext}").is_file())
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != RATE:
        import librosa

        audio = librosa.resample(audio, orig_sr=rate, target_sr=RATE)
    return Item(name, audio.astype(np.float32), (directory / f"{name}.txt").read_text().strip())


def long_recording(name: str, clips: list[Item], gaps: list[float]) -> Item:
    """Clips in turn, each followed by the next gap's seconds of silence, until LONG_SECONDS."""
    parts, texts, total, i = [], [], 0.0, 0
    while total < LONG_SECONDS:
        clip, gap = clips[i % len(clips)], gaps[i % len(gaps)]
        parts += [clip.samples, np.zeros(int(gap * RATE), np.float32)]
        texts.append(clip.text)
        total += clip.seconds + gap
        i += 1
    return Item(name, np.concatenate(parts), " ".join(texts))


def load_sets(directory: Path) -> dict[str, list[Item]]:
    clips = [read_clip(directory, n) for n in CLIPS]
    return {
        "short": clips,
        "long": [
            long_recording("long-a", clips, [0.6, 1.2, 0.8]),
            long_recording("long-b", clips[::-1], [1.5, 0.5, 1.0, 2.0]),
        ],
    }


def normalize(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference length (no dependency: runs in any image)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))
