"""What an upload may decode to, checked from its header before decoding and counted while it decodes.

A few kilobytes can declare hours of audio (a 1 Hz WAV resampled to 16 kHz, a FLAC of constant frames), so
nothing here trusts the upload's size: the header is checked first, then every decoded block is counted, and
decoding stops at the first block past a limit.
"""

from __future__ import annotations

from dataclasses import dataclass

# Hard cap on decoded duration, also when MAX_AUDIO_SECONDS=0 ("no limit" is not offered: 4 h is 0.9 GB of
# 16 kHz float32 samples).
HARD_MAX_AUDIO_SECONDS = 4 * 3600.0
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8
# OpenAI refuses audio shorter than 0.1 s; Whisper has nothing to hear in it.
MIN_AUDIO_SECONDS = 0.1
BYTES_PER_SAMPLE = 4  # float32, the only format decoded


class AudioDecodeError(ValueError):
    """The upload is not audio we can decode, or has a shape we refuse."""


class EmptyAudioError(AudioDecodeError):
    """The upload decodes to no (or too few) samples."""


class AudioTooShortError(EmptyAudioError):
    """The upload decodes to less than MIN_AUDIO_SECONDS."""


class AudioTooLongError(AudioDecodeError):
    """The upload decodes to more audio than the limits allow."""


class DecodeTimeoutError(AudioDecodeError):
    """Decoding the upload took longer than the decode deadline."""


@dataclass(frozen=True)
class AudioLimits:
    max_seconds: float = 3600.0  # MAX_AUDIO_SECONDS; 0 means HARD_MAX_AUDIO_SECONDS
    max_decoded_bytes: int = 2048 * 2**20  # MAX_DECODED_MB: samples of every channel at the source rate, float32

    @property
    def seconds(self) -> float:
        return min(self.max_seconds or HARD_MAX_AUDIO_SECONDS, HARD_MAX_AUDIO_SECONDS)

    def check_shape(self, rate: int, channels: int) -> None:
        """Refuse a sample rate or channel count outside what real recordings use, before decoding."""
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise AudioDecodeError(
                f"the audio's sample rate is {rate} Hz; this server accepts {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
            )
        if not 1 <= channels <= MAX_CHANNELS:
            raise AudioDecodeError(f"the audio has {channels} channels; this server accepts 1 to {MAX_CHANNELS}")

    def check_declared(self, seconds: float | None) -> None:
        """Refuse audio whose header already says it is too long."""
        if seconds is not None and seconds > self.seconds:
            raise AudioTooLongError(
                f"audio is {seconds:.1f} s long; this server accepts at most {self.seconds:g} s {self._which}"
            )

    @property
    def _which(self) -> str:
        hard = not self.max_seconds or self.max_seconds > HARD_MAX_AUDIO_SECONDS
        return "(the hard cap, MAX_AUDIO_SECONDS=0)" if hard else "(MAX_AUDIO_SECONDS)"


class DecodeBudget:
    """Counts decoded frames; raises at the first block that passes a limit."""

    def __init__(self, limits: AudioLimits):
        self.limits = limits
        self.seconds = 0.0
        self.bytes = 0

    def take(self, frames: int, rate: int, channels: int) -> None:
        self.limits.check_shape(rate, channels)  # a stream may change shape mid-way
        self.seconds += frames / rate
        self.bytes += frames * channels * BYTES_PER_SAMPLE
        if self.seconds > self.limits.seconds:
            raise AudioTooLongError(
                f"audio is longer than {self.limits.seconds:g} s, the most this server accepts {self.limits._which}"
            )
        if self.bytes > self.limits.max_decoded_bytes:
            raise AudioTooLongError(
                f"audio decodes to more than {self.limits.max_decoded_bytes / 2**20:g} MiB of samples (MAX_DECODED_MB)"
            )
