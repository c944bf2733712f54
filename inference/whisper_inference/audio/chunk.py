"""Split long audio into fixed windows that are transcribed concurrently."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    index: int
    start: float      # seconds from the start of the upload
    samples: np.ndarray

    def duration(self, rate: int) -> float:
        return len(self.samples) / rate


def split_audio(samples: np.ndarray, rate: int, window_seconds: float) -> list[Chunk]:
    """Consecutive windows of `window_seconds`; the last one holds the remainder.

    A remainder shorter than a tenth of a second is folded into the previous window when that
    keeps it within Whisper's 30 s input, because Whisper hallucinates on near-empty input.
    """
    size = max(1, int(round(window_seconds * rate)))
    bounds = list(range(0, len(samples), size)) or [0]
    if len(bounds) > 1 and len(samples) - bounds[-1] < rate // 10 and window_seconds + 0.1 <= 30:
        bounds.pop()
    chunks = []
    for i, begin in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else len(samples)
        chunks.append(Chunk(i, begin / rate, samples[begin:end]))
    return chunks
