"""Split long audio into windows that are transcribed concurrently, cut where it is quietest."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SECONDS = 0.1  # the span whose loudness decides a cut point (about a short word gap)
QUIET_RATIO = 0.1  # a stretch this far (-20 dB) below the upload's speech level counts as silence


@dataclass(frozen=True)
class Window:
    start: float  # seconds from the start of the upload
    samples: np.ndarray

    def duration(self, rate: int) -> float:
        return len(self.samples) / rate


def _frame_energy(samples: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Mean square of every `frame`-long span starting at multiples of `hop`."""
    if len(samples) < frame:
        return np.array([float(np.mean(np.square(samples, dtype=np.float64)))]) if len(samples) else np.zeros(1)
    cs = np.concatenate([[0.0], np.cumsum(np.square(samples, dtype=np.float64))])
    starts = np.arange(0, len(samples) - frame + 1, hop)
    return (cs[starts + frame] - cs[starts]) / frame


def quietest_cut(samples: np.ndarray, rate: int, lo: int, hi: int) -> int:
    """A sample index in [lo, hi]: the middle of the longest quiet stretch there.

    Quiet means a FRAME_SECONDS span within 3 dB of the quietest one in the range, or 20 dB below its loud
    spans (QUIET_RATIO), whichever is more. The longest quiet stretch is
    most likely a pause between sentences rather than a gap between words (synthetic and clean speech has
    silent word gaps too); of equally long ones the last wins, so the window stays as long as it may.
    """
    frame, hop = max(1, int(rate * FRAME_SECONDS)), max(1, rate // 100)
    lo = max(0, lo - frame // 2)
    region = samples[lo : min(len(samples), hi + frame // 2)]
    if len(region) <= frame:
        return hi
    energy = _frame_energy(region, frame, hop)
    threshold = max(2 * energy.min(), QUIET_RATIO**2 * float(np.percentile(energy, 95))) + 1e-12
    quiet = np.concatenate([[False], energy <= threshold, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    runs = edges.reshape(-1, 2)  # [first, past-last) frame of every quiet stretch
    lengths = runs[:, 1] - runs[:, 0]
    first, last = runs[np.flatnonzero(lengths == lengths.max())[-1]]
    middle = (first + last - 1) // 2
    return min(hi, lo + int(middle) * hop + frame // 2)


def split_windows(samples: np.ndarray, rate: int, window_seconds: float, search_seconds: float = 0.0) -> list[Window]:
    """Windows of at most `window_seconds`, each cut at the quietest point of its last `search_seconds`.

    With search_seconds=0 the windows are fixed. Cutting in a pause keeps a word from being split between two
    windows that are decoded independently. A remainder shorter than a tenth of a second is folded into the
    previous window when that keeps it within Whisper's 30 s input, because Whisper hallucinates on near-empty
    input.
    """
    size = max(1, int(round(window_seconds * rate)))
    search = min(int(round(search_seconds * rate)), size // 2)
    bounds = [0]
    while len(samples) - bounds[-1] > size:
        end = bounds[-1] + size
        bounds.append(quietest_cut(samples, rate, end - search, end) if search > 0 else end)
    if len(bounds) > 1 and len(samples) - bounds[-1] < rate // 10 and window_seconds + 0.1 <= 30:
        bounds.pop()
    windows = []
    for i, begin in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else len(samples)
        windows.append(Window(begin / rate, samples[begin:end]))
    return windows


def speech_level(samples: np.ndarray, rate: int, block_frames: int = 6000) -> float:
    """The upload's loud-frame energy (95th percentile of FRAME_SECONDS spans): what speech sounds like here.

    Computed a block of frames at a time, so an hour of audio needs one float per frame, not a float64 copy."""
    frame = max(1, int(rate * FRAME_SECONDS))
    whole = len(samples) // frame * frame
    if whole == 0:
        return float(np.mean(np.square(samples, dtype=np.float64))) if len(samples) else 0.0
    step = block_frames * frame
    energy = np.concatenate(
        [
            np.mean(np.square(samples[i : min(i + step, whole)], dtype=np.float32).reshape(-1, frame), axis=1)
            for i in range(0, whole, step)
        ]
    )
    return float(np.percentile(energy, 95))


def is_quiet(samples: np.ndarray, rate: int, level: float) -> bool:
    """No FRAME_SECONDS span reaches QUIET_RATIO of `level` (in amplitude): nothing to transcribe here."""
    frame = max(1, int(rate * FRAME_SECONDS))
    return float(_frame_energy(samples, frame, max(1, frame // 2)).max()) <= (QUIET_RATIO**2) * level
