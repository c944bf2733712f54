"""Voice activity: Silero VAD (ONNX, from faster-whisper's wheel) -> speech regions -> windows cut in pauses.

With VAD on, Whisper only hears speech: silence between speech regions is skipped (it is where Whisper
hallucinates "Thank you." and the like), windows are built from whole speech regions (a cut falls in a pause,
never inside a region, so never mid-word), and each window keeps its start in the upload, so timestamps stay in
the upload's time.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .windows import Window, quietest_cut

VAD_RATE = 16000
FRAME = 512  # samples the model scores at a time (32 ms)
CONTEXT = 64  # samples of the previous frame the model sees with each frame
NEG_MARGIN = 0.15  # a region ends when the probability falls this far below the threshold (hysteresis)
MIN_SPEECH_SECONDS = 0.1  # shorter blips are not speech
END_PADDING_SECONDS = 0.2  # kept after a region's last speech frame (the tail of the last word)
JOIN_GAP_SECONDS = 2.0  # regions closer than this share a window (Whisper keeps their context); a longer
# silence is skipped


@dataclass(frozen=True)
class VadOptions:
    """OpenAI's server_vad parameters (chunking_strategy); "auto" uses these defaults."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


class VadUnavailable(RuntimeError):
    """The Silero model or onnxruntime is missing from this installation."""


def model_path() -> Path:
    """silero_vad*.onnx in faster-whisper's installed package (found without importing it: its import pulls in
    CTranslate2, which this server does not use)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise VadUnavailable("VAD needs the faster-whisper package (for its Silero VAD model); it is not installed")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("assets/silero_vad*.onnx"))
    if not found:
        raise VadUnavailable("faster-whisper's package holds no assets/silero_vad*.onnx")
    return found[-1]


class SileroVad:
    """Speech probability per 32 ms frame. Loaded on first use; one session, serialized (it is small and fast:
    about a thousandth of real time on one core)."""

    def __init__(self) -> None:
        self._session = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise VadUnavailable("VAD needs onnxruntime; it is not installed") from exc
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        opts.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
        )

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """One probability per FRAME samples of 16 kHz audio (the last frame zero-padded)."""
        if len(samples) == 0:
            return np.zeros(0, np.float32)
        x = np.pad(samples.astype(np.float32), (0, (-len(samples)) % FRAME)).reshape(-1, FRAME)
        context = np.concatenate([np.zeros((1, CONTEXT), np.float32), x[:-1, -CONTEXT:]])
        batch = np.concatenate([context, x], axis=1)
        state = np.zeros((1, 1, 128), np.float32)
        with self._lock:
            if self._session is None:
                self._load()
            assert self._session is not None
            probs = self._session.run(None, {"input": batch, "h": state, "c": state})[0]
        return np.asarray(probs, np.float32).reshape(-1)


def speech_regions(probs: np.ndarray, n_samples: int, opts: VadOptions) -> list[tuple[int, int]]:
    """[start, end) sample ranges of speech: a region opens at a frame >= threshold, closes after
    silence_duration_ms of frames below threshold - NEG_MARGIN, and is padded by prefix_padding_ms before and
    END_PADDING_SECONDS after (pads of neighbours may meet, never overlap)."""
    low = max(opts.threshold - NEG_MARGIN, 0.01)
    min_silence = max(1, int(np.ceil(opts.silence_duration_ms / 1000 * VAD_RATE / FRAME)))
    regions: list[list[int]] = []
    start, quiet_since = None, None
    for i, p in enumerate(probs):
        if start is None:
            if p >= opts.threshold:
                start, quiet_since = i, None
            continue
        if p >= opts.threshold:
            quiet_since = None
        elif p < low:
            quiet_since = i if quiet_since is None else quiet_since
            if i - quiet_since >= min_silence:
                regions.append([start * FRAME, quiet_since * FRAME])
                start, quiet_since = None, None
    if start is not None:
        regions.append([start * FRAME, (quiet_since if quiet_since is not None else len(probs)) * FRAME])
    regions = [r for r in regions if r[1] - r[0] >= MIN_SPEECH_SECONDS * VAD_RATE]
    before, after = int(opts.prefix_padding_ms / 1000 * VAD_RATE), int(END_PADDING_SECONDS * VAD_RATE)
    out: list[tuple[int, int]] = []
    for a, b in regions:
        a, b = max(0, a - before), min(n_samples, b + after)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def speech_windows(
    samples: np.ndarray, rate: int, regions: list[tuple[int, int]], window_seconds: float, search_seconds: float
) -> list[Window]:
    """Windows from speech regions: consecutive regions less than JOIN_GAP_SECONDS apart share a window while it
    stays within window_seconds (the short pauses between them stay in, as context); a longer silence is skipped.
    A single region longer than a window is cut at its quietest point near each window's end."""
    size = int(window_seconds * rate)
    spans: list[list[int]] = []
    for a, b in regions:
        if spans and a - spans[-1][1] < JOIN_GAP_SECONDS * rate and b - spans[-1][0] <= size:
            spans[-1][1] = b
        else:
            spans.append([a, b])
    windows: list[Window] = []
    for a, b in spans:
        while b - a > size:
            search = min(int(search_seconds * rate), size // 2)
            cut = quietest_cut(samples, rate, a + size - search, a + size)
            windows.append(Window(round(a / rate, 3), samples[a:cut]))
            a = cut
        windows.append(Window(round(a / rate, 3), samples[a:b]))
    return windows


def chunking_options(value: object) -> VadOptions | None:
    """OpenAI's chunking_strategy -> VAD options: None, "" or "none" (off: the upload is cut in fixed windows;
    "none" is our extension, so that a request can opt out of a server default), "auto", or {"type": "server_vad",
    "threshold", "prefix_padding_ms", "silence_duration_ms"} (a dict or its JSON text). Raises ValueError with the
    reason."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "none")):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text == "auto":
            return VadOptions()
        if not text.startswith("{"):
            raise ValueError(f'must be "auto", "none" or a server_vad object; got {text!r}')
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ValueError('must be "auto", "none" or a server_vad object')
    unknown = set(value) - {"type", "threshold", "prefix_padding_ms", "silence_duration_ms"}
    if value.get("type") != "server_vad":
        raise ValueError(f'type must be "server_vad"; got {value.get("type")!r}')
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    defaults = VadOptions()
    try:
        threshold = float(value.get("threshold", defaults.threshold))
        prefix = int(value.get("prefix_padding_ms", defaults.prefix_padding_ms))
        silence = int(value.get("silence_duration_ms", defaults.silence_duration_ms))
    except (TypeError, ValueError, OverflowError):  # OverflowError: int() of a JSON 1e400
        raise ValueError("threshold must be a number, prefix_padding_ms and silence_duration_ms integers") from None
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1; got {threshold}")
    for name, ms in (("prefix_padding_ms", prefix), ("silence_duration_ms", silence)):
        if not 0 <= ms <= 10_000:
            raise ValueError(f"{name} must be between 0 and 10000; got {ms}")
    return VadOptions(threshold, prefix, silence)


def form_chunking(form: Mapping[str, object]) -> object:
    """chunking_strategy as a multipart form carries it: one field ("auto", or the object as JSON), or the
    object's fields in brackets as the official SDKs send it (chunking_strategy[type]=server_vad, ...)."""
    nested = {k[len("chunking_strategy[") : -1]: v for k, v in form.items() if k.startswith("chunking_strategy[")}
    if nested:
        return nested
    return form.get("chunking_strategy")


def find_speech(vad: SileroVad, samples: np.ndarray, rate: int, opts: VadOptions) -> list[tuple[int, int]]:
    """Speech regions as sample ranges of `samples` (at `rate`; the model listens at 16 kHz)."""
    if rate == VAD_RATE:
        return speech_regions(vad.probabilities(samples), len(samples), opts)
    from scipy.signal import resample_poly

    at16k = resample_poly(samples, VAD_RATE, rate).astype(np.float32)
    regions = speech_regions(vad.probabilities(at16k), len(at16k), opts)
    scale = rate / VAD_RATE
    return [(int(a * scale), min(len(samples), int(b * scale))) for a, b in regions]
