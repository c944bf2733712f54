"""Uploaded bytes -> 16 kHz mono float32 samples, for the audio containers OpenAI accepts, within limits.

libsndfile (through soundfile) reads wav, flac, ogg and mp3; PyAV, whose wheel carries its own FFmpeg
libraries, reads the rest. FFmpeg never picks a demuxer by content sniffing here (its sniffer finds SDP, HLS
and concat files, which open network sockets or other files): the container is recognised from its magic
bytes against an allowlist and the matching demuxer is forced. Decoding is block by block, mixed to mono and
resampled (soxr, streaming) as it goes, and stops at the first block past a limit (audio/limits.py).
Runs in a decode worker process (audio/worker.py), never on the server's event loop.
"""

from __future__ import annotations

import io

import av
import numpy as np
import soundfile as sf
import soxr  # type: ignore[import-untyped]

from .limits import (
    MIN_AUDIO_SECONDS,
    AudioDecodeError,
    AudioLimits,
    AudioTooShortError,
    DecodeBudget,
    EmptyAudioError,
)

SUPPORTED = "flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav, webm"
# libsndfile's formats we read (its others, e.g. raw headerless PCM, are not uploads anyone means)
SOUNDFILE_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "FLAC", "OGG", "MPEG"})
BLOCK_SECONDS = 1.0  # decoded at a time: the granularity at which limits are enforced


def sniff_container(head: bytes) -> str | None:
    """The FFmpeg demuxer for an allowed container, recognised by its magic bytes; None for anything else."""
    if head[4:8] == b"ftyp":
        return "mp4"  # mp4, m4a (FFmpeg's mov demuxer)
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"  # webm, mka
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "aac"  # ADTS: frame sync, layer 0
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "mp3"  # MPEG audio frame sync
    return None


class _Mono16k:
    """Mono blocks at the source rate in, target-rate samples out (streaming soxr, HQ like librosa's soxr_hq)."""

    def __init__(self, rate: int, target: int):
        self.resampler = None if rate == target else soxr.ResampleStream(rate, target, 1, dtype="float32", quality="HQ")
        self.parts: list[np.ndarray] = []

    def push(self, mono: np.ndarray, last: bool = False) -> None:
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if not np.isfinite(mono).all():
            raise AudioDecodeError("the uploaded audio contains invalid (NaN or infinite) samples")
        out = self.resampler.resample_chunk(mono, last=last) if self.resampler is not None else mono
        if len(out):
            self.parts.append(np.array(out, dtype=np.float32))

    def samples(self) -> np.ndarray:
        self.push(np.zeros(0, np.float32), last=True)
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


def _declared_frames(frames: int) -> int | None:
    """libsndfile's frame count, or None where the header does not say (it then reports a huge number)."""
    return frames if 0 < frames < 2**62 else None


def _soundfile(data: bytes, limits: AudioLimits, target: int) -> np.ndarray | None:
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except Exception:  # libsndfile reports every unknown format as a generic error
        return None
    with f:
        if f.format not in SOUNDFILE_FORMATS:
            return None
        rate, channels = int(f.samplerate), int(f.channels)
        limits.check_shape(rate, channels)
        frames = _declared_frames(f.frames)
        limits.check_declared(frames / rate if frames is not None else None)
        budget, out = DecodeBudget(limits), _Mono16k(rate, target)
        block = max(1, int(rate * BLOCK_SECONDS))
        while True:
            try:
                x = f.read(block, dtype="float32", always_2d=True)
            except Exception as exc:  # a corrupt frame midway
                raise AudioDecodeError(f"the uploaded audio is corrupt: {exc}") from None
            if not len(x):
                break
            budget.take(len(x), rate, channels)
            out.push(x[:, 0] if channels == 1 else x.mean(axis=1))
        return out.samples()


def _pyav(data: bytes, container: str, limits: AudioLimits, target: int) -> np.ndarray:
    try:
        with av.open(io.BytesIO(data), mode="r", format=container) as c:
            if not c.streams.audio:
                raise AudioDecodeError("the uploaded file has no audio stream")
            stream = c.streams.audio[0]
            rate, channels = int(stream.rate or 0), int(stream.channels or 0)
            limits.check_shape(rate, channels)
            if stream.duration is not None and stream.time_base is not None:
                limits.check_declared(float(stream.duration * stream.time_base))
            elif c.duration is not None and c.duration > 0:
                limits.check_declared(c.duration / av.time_base)
            budget, out = DecodeBudget(limits), _Mono16k(rate, target)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in c.decode(stream):
                budget.take(frame.samples, int(frame.sample_rate), len(frame.layout.channels))
                for mono in resampler.resample(frame):
                    out.push(mono.to_ndarray().reshape(-1))
            for mono in resampler.resample(None):
                out.push(mono.to_ndarray().reshape(-1))
            return out.samples()
    except AudioDecodeError:
        raise
    except Exception:  # FFmpeg raises many error types for damaged or foreign input
        raise AudioDecodeError(f"could not decode the uploaded file as audio (supported: {SUPPORTED})") from None


def decode_audio(data: bytes, limits: AudioLimits, target_rate: int = 16000) -> np.ndarray:
    """Decode and resample to `target_rate` mono float32 within `limits`; raise an AudioDecodeError subclass."""
    if not data:
        raise EmptyAudioError("the uploaded file is empty")
    samples = _soundfile(data, limits, target_rate)
    if samples is None:
        container = sniff_container(data[:16])
        if container is None:
            raise AudioDecodeError(f"the uploaded file is not in a supported audio format (supported: {SUPPORTED})")
        samples = _pyav(data, container, limits, target_rate)
    if len(samples) < MIN_AUDIO_SECONDS * target_rate:
        raise AudioTooShortError(
            f"the uploaded audio is {len(samples) / target_rate:.3f} s long; the minimum is {MIN_AUDIO_SECONDS:g} s"
        )
    return samples
