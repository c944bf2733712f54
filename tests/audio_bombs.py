"""Small uploads that declare or decode to far more audio than they hold (decompression bombs), and odd shapes."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf


def wav_header(rate: int, channels: int, data_bytes: int, bits: int = 16) -> bytes:
    """A canonical PCM WAV header, whatever the rate or channel count (libsndfile refuses to write odd ones)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", data_bytes))
    )


def wav(rate: int, channels: int, frames: int) -> bytes:
    """A WAV of a quiet tone with any rate and channel count."""
    pcm = (np.sin(np.arange(frames * channels) * 0.05) * 3000).astype("<i2").tobytes()
    return wav_header(rate, channels, len(pcm)) + pcm


def one_hertz_wav(seconds: int = 3600) -> bytes:
    """3600 samples at 1 Hz: 7 KB that a resampler turns into an hour of 16 kHz audio."""
    return wav(1, 1, seconds)


def silent_flac(seconds: float, rate: int = 8000, channels: int = 1) -> bytes:
    """Silence encoded by libsndfile's FLAC encoder: constant subframes, a few bytes per 4096 samples."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, channels, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros((rate * 60, channels), np.int16)
        for _ in range(int(seconds // 60)):
            f.write(block)
    return buf.getvalue()


def without_declared_length(flac: bytes) -> bytes:
    """The same FLAC with STREAMINFO's total-samples field zeroed ("unknown", as a streaming encoder writes it)."""
    assert flac[:4] == b"fLaC"
    packed = int.from_bytes(flac[18:26], "big") & ~((1 << 36) - 1)  # rate(20) channels(3) bits(5) total(36)
    return flac[:18] + packed.to_bytes(8, "big") + flac[26:]
