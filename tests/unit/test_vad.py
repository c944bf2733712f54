"""VAD: chunking_strategy parsing, speech regions, windows from regions, and the real Silero model (offline)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from whisper_inference.audio.vad import (
    FRAME,
    SileroVad,
    VadOptions,
    chunking_options,
    find_speech,
    form_chunking,
    speech_regions,
    speech_windows,
)
from whisper_inference.config import ConfigError, load_settings

pytestmark = pytest.mark.unit
RATE = 16000


def test_chunking_strategy_forms():
    assert chunking_options(None) is None and chunking_options("") is None
    assert chunking_options("auto") == VadOptions()
    opts = {"type": "server_vad", "threshold": 0.7, "prefix_padding_ms": 100, "silence_duration_ms": 800}
    assert chunking_options(opts) == VadOptions(0.7, 100, 800)
    assert chunking_options('{"type": "server_vad", "threshold": "0.3"}') == VadOptions(threshold=0.3)
    # the official SDKs send the object as bracketed form fields
    form = {"chunking_strategy[type]": "server_vad", "chunking_strategy[silence_duration_ms]": "300", "model": "m"}
    assert chunking_options(form_chunking(form)) == VadOptions(silence_duration_ms=300)
    assert form_chunking({"chunking_strategy": "auto"}) == "auto"


def test_none_opts_out_of_the_server_default():
    """chunking_strategy=none (our extension): fixed windows, also when CHUNKING_STRATEGY sets a default; the route
    uses the server default only when the request sends no chunking_strategy at all."""
    assert chunking_options("none") is None and chunking_options(" none ") is None
    assert form_chunking({"chunking_strategy": "none"}) == "none"
    for server in ("none", ""):
        assert load_settings(model_id="m", chunking_strategy=server).default_vad is None
    with pytest.raises(ValueError, match='"none"'):
        chunking_options("None of it")


@pytest.mark.parametrize(
    "bad",
    [
        "sometimes",
        "{not json",
        {"type": "client_vad"},
        {"type": "server_vad", "threshold": 2},
        {"type": "server_vad", "silence_duration_ms": -1},
        {"type": "server_vad", "prefix_padding_ms": "lots"},
        {"type": "server_vad", "extra": 1},
        '{"type": "server_vad", "silence_duration_ms": 1e400}',  # int(inf): OverflowError, was a 500
        ["auto"],
    ],
)
def test_bad_chunking_strategy_is_refused(bad):
    with pytest.raises(ValueError):
        chunking_options(bad)


def test_server_default_is_validated_at_start():
    assert load_settings(model_id="m", chunking_strategy="auto").default_vad == VadOptions()
    assert load_settings(model_id="m").default_vad is None
    with pytest.raises(ConfigError, match="CHUNKING_STRATEGY"):
        load_settings(model_id="m", chunking_strategy="always")


def test_regions_need_enough_silence_to_close_and_are_padded():
    probs = np.array([0.0] * 10 + [0.9] * 10 + [0.1] * 14 + [0.9] * 10 + [0.0] * 40)
    n = len(probs) * FRAME
    # 14 quiet frames (448 ms) do not end a region under silence_duration_ms=500
    (region,) = speech_regions(probs, n, VadOptions(0.5, 0, 500))
    assert region[0] == 10 * FRAME and region[1] >= 44 * FRAME
    # ... they do under 100 ms; the prefix padding reaches back 320 ms (10 frames)
    regions = speech_regions(probs, n, VadOptions(0.5, 320, 100))
    assert regions[0][0] == 0 and len(speech_regions(probs, n, VadOptions(0.5, 0, 100))) == 2
    assert speech_regions(np.zeros(50), 50 * FRAME, VadOptions()) == []


def test_windows_from_regions_skip_long_silence_and_keep_upload_time():
    samples = np.zeros(100 * RATE, np.float32)
    regions = [(1 * RATE, 3 * RATE), (4 * RATE, 6 * RATE), (50 * RATE, 52 * RATE)]
    windows = speech_windows(samples, RATE, regions, 30.0, 5.0)
    assert [(w.start, len(w.samples) / RATE) for w in windows] == [(1.0, 5.0), (50.0, 2.0)]


def test_a_long_region_is_cut_into_windows():
    rng = np.random.default_rng(0)
    samples = (0.1 * rng.standard_normal(70 * RATE)).astype(np.float32)
    windows = speech_windows(samples, RATE, [(0, 70 * RATE)], 30.0, 5.0)
    assert len(windows) == 3 and all(len(w.samples) <= 30 * RATE for w in windows)
    assert sum(len(w.samples) for w in windows) == 70 * RATE


@pytest.fixture(scope="module")
def vad():
    return SileroVad()


def synthetic(kind: str, seconds: float = 8.0) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * RATE)) / RATE
    if kind == "silence":
        return np.zeros(len(t), np.float32)
    if kind == "noise":
        return (0.003 * rng.standard_normal(len(t))).astype(np.float32)
    # music-like: a chord of sustained tones with notes changing every half second
    notes = rng.choice([220.0, 261.6, 329.6, 392.0, 440.0], size=int(seconds * 2) + 1)
    f = notes[(t * 2).astype(int)]
    return (0.2 * (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 1.5 * f * t))).astype(np.float32)


@pytest.mark.parametrize("kind", ["silence", "noise", "tones"])
def test_silero_finds_no_speech_in_non_speech(vad, kind):
    assert find_speech(vad, synthetic(kind), RATE, VadOptions()) == []


def test_silero_finds_the_speech(vad, fixtures_dir):
    speech, rate = sf.read(fixtures_dir / "jfk.wav", dtype="float32")
    padded = np.concatenate([np.zeros(5 * rate, np.float32), speech, np.zeros(5 * rate, np.float32)])
    regions = find_speech(vad, padded, rate, VadOptions())
    assert regions and regions[0][0] >= 4 * rate and regions[-1][1] <= len(padded) - 4 * rate
    speech_seconds = sum(b - a for a, b in regions) / rate
    assert speech_seconds >= 0.6 * len(speech) / rate
