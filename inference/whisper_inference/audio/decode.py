"""Uploaded bytes -> 16 kHz mono float32 samples, for every container OpenAI accepts.

libsndfile (through soundfile) reads wav, flac, ogg/opus and mp3; PyAV, whose wheel carries its own
FFmpeg libraries, reads m4a/mp4 and webm. No system ffmpeg is needed.
"""

from __future__ import annotations

import io

import numpy as np


class AudioDecodeError(ValueError):
    """The upload is not audio we can decode."""


class EmptyAudioError(AudioDecodeError):
    """The upload decodes to no samples."""


def _soundfile(data: bytes) -> tuple[np.ndarray, int] | None:
    import soundfile as sf

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception:  # libsndfile reports every unknown format as a generic error
        return None
    return samples.mean(axis=1), int(rate)


def _pyav(data: bytes) -> tuple[np.ndarray, int] | None:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.rate or 16000)
            parts = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
            rate = resampler.rate
    except Exception:  # FFmpeg raises many error types for damaged or foreign input
        return None
    if not parts:
        return np.zeros(0, np.float32), int(rate)
    return np.concatenate(parts).astype(np.float32), int(rate)


def decode_audio(data: bytes, target_rate: int = 16000) -> np.ndarray:
    """Decode and resample to `target_rate` mono; raise AudioDecodeError / EmptyAudioError."""
    if not data:
        raise EmptyAudioError("the uploaded file is empty")
    decoded = _soundfile(data) or _pyav(data)
    if decoded is None:
        raise AudioDecodeError(
            "could not decode the uploaded file as audio (supported: flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav, webm)"
        )
    samples, rate = decoded
    if samples.size == 0 or rate <= 0:
        raise EmptyAudioError("the uploaded audio contains no samples")
    if not np.isfinite(samples).all():
        raise AudioDecodeError("the uploaded audio contains invalid (NaN or infinite) samples")
    if rate != target_rate:
        import librosa

        samples = librosa.resample(samples, orig_sr=rate, target_sr=target_rate, res_type="soxr_hq")
    return np.ascontiguousarray(samples, dtype=np.float32)
