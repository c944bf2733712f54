"""Whisper's log-mel spectrogram of one window, in NumPy (what the CTranslate2 engine feeds its encoder).

A 400-sample Hann STFT every 160 samples, power spectrum through Slaney-normalised mel filters (librosa's, as
openai/whisper ships them), log10 floored at 1e-10, clamped to 8 below the maximum, scaled to about [-1, 1]: the
computation of openai/whisper's log_mel_spectrogram. What fills the 30 s input past the window's audio is a choice
(see log_mel).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

RATE = 16000
N_FFT = 400
HOP = 160
WINDOW_SAMPLES = 30 * RATE
FRAMES = WINDOW_SAMPLES // HOP  # 3000


@lru_cache(maxsize=4)
def mel_filters(n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=RATE, n_fft=N_FFT, n_mels=n_mels).astype(np.float32)


@lru_cache(maxsize=1)
def hann() -> np.ndarray:
    # periodic Hann, as torch.hann_window
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def log_mel(samples: np.ndarray, n_mels: int, padding: Literal["features", "audio"] = "features") -> np.ndarray:
    """[n_mels, 3000] float32 for up to 30 s of 16 kHz mono audio (longer input is cut at 30 s).

    padding="features" (decoding): the spectrum of the window's own samples and one hop of silence after them, the
    frames past them 0 (a faint floor once scaled), as faster-whisper's transcribe computes its input; on the
    benchmark's clips the encoder hears more words this way (README, CPU engines). padding="audio" (language
    detection): openai/whisper's, the spectrum of the audio zero-padded to 30 s, whose padding sits at the clamp, 8
    below the maximum.
    """
    part = np.asarray(samples, dtype=np.float32)[:WINDOW_SAMPLES]
    if padding == "audio":
        audio = np.zeros(WINDOW_SAMPLES, np.float32)
        audio[: len(part)] = part
    else:
        audio = np.concatenate([part, np.zeros(HOP, np.float32)])
    padded = np.pad(audio, N_FFT // 2, mode="reflect")  # torch.stft(center=True)
    count = min(len(audio) // HOP, FRAMES)  # center=True gives one frame more, and Whisper drops the last
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:count]
    power = np.abs(np.fft.rfft(frames * hann(), axis=-1)).astype(np.float32) ** 2  # [count, 201]
    mel = mel_filters(n_mels) @ power.T  # [n_mels, count]
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    out = np.zeros((n_mels, FRAMES), np.float32)
    out[:, :count] = (logs + 4.0) / 4.0
    return out
