"""Bounded decoding, on real decoders (libsndfile, FFmpeg through PyAV) and crafted uploads: refused from the header
where it says enough, stopped at the limit while decoding where it does not, and never sniffed into a demuxer that
opens sockets (SDP)."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from audio_bombs import one_hertz_wav, silent_flac, wav, without_declared_length

from whisper_inference.audio.decode import decode_audio, sniff_container
from whisper_inference.audio.limits import (
    HARD_MAX_AUDIO_SECONDS,
    AudioDecodeError,
    AudioLimits,
    AudioTooLongError,
    AudioTooShortError,
)

pytestmark = pytest.mark.unit
LIMITS = AudioLimits(max_seconds=120)
SDP = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nm=audio 5004 RTP/AVP 0\r\n"


def test_one_hertz_wav_is_refused_by_its_rate():
    with pytest.raises(AudioDecodeError, match="1 Hz; this server accepts 4000-192000 Hz"):
        decode_audio(one_hertz_wav(), LIMITS)


@pytest.mark.parametrize("rate", [2_000_000_000, 3999, 192_001])
def test_sample_rate_outside_4_to_192_khz_is_refused(rate):
    with pytest.raises(AudioDecodeError, match="sample rate"):
        decode_audio(wav(rate, 1, 100), LIMITS)


@pytest.mark.parametrize("channels", [9, 1024])
def test_more_than_eight_channels_is_refused(channels):
    with pytest.raises(AudioDecodeError, match="1 to 8"):
        decode_audio(wav(16000, channels, 100), LIMITS)


def test_eight_channels_are_mixed_to_mono():
    assert len(decode_audio(wav(16000, 8, 16000), LIMITS)) == 16000


def test_one_sample_is_too_short():
    with pytest.raises(AudioTooShortError, match="minimum is 0.1 s"):
        decode_audio(wav(16000, 1, 1), LIMITS)


def test_declared_length_over_the_limit_is_refused_before_decoding():
    bomb = silent_flac(3600)  # an hour of libsndfile-encoded silence
    assert len(bomb) < 200_000
    began = time.process_time()
    with pytest.raises(AudioTooLongError, match=r"3600.0 s long; this server accepts at most 120 s \(MAX_AUDIO"):
        decode_audio(bomb, LIMITS)
    assert time.process_time() - began < 1.0  # from the header alone: nothing near an hour was decoded


def test_undeclared_length_stops_at_the_limit_with_bounded_memory():
    bomb = without_declared_length(silent_flac(3600))
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    try:
        with pytest.raises(AudioTooLongError, match="longer than 120 s"):
            decode_audio(bomb, LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # an hour at 16 kHz float32 is 230 MB; stopping at 120 s keeps the peak near 120 s worth (7.7 MB)
    assert peak < 32 * 2**20, peak


def test_zero_means_the_hard_cap_not_unlimited():
    limits = AudioLimits(max_seconds=0)
    assert limits.seconds == HARD_MAX_AUDIO_SECONDS
    with pytest.raises(AudioTooLongError, match="hard cap"):
        decode_audio(silent_flac(HARD_MAX_AUDIO_SECONDS + 60, rate=4000), limits)


def test_decoded_bytes_cap_counts_every_channel():
    limits = AudioLimits(max_seconds=120, max_decoded_bytes=2**20)
    with pytest.raises(AudioTooLongError, match="MAX_DECODED_MB"):
        decode_audio(without_declared_length(silent_flac(60, rate=48000, channels=8)), limits)


def test_sdp_is_never_opened():
    assert sniff_container(SDP) is None
    began = time.monotonic()
    with pytest.raises(AudioDecodeError, match="not in a supported audio format"):
        decode_audio(SDP, LIMITS)
    assert time.monotonic() - began < 5  # FFmpeg's sdp demuxer would bind UDP ports and wait


@pytest.mark.parametrize(
    "head,container",
    [
        (b"\x00\x00\x00\x20ftypM4A ", "mp4"),
        (b"\x1a\x45\xdf\xa3\x01", "matroska"),
        (b"OggS\x00", "ogg"),
        (b"fLaC\x00", "flac"),
        (b"RIFF\x00\x00\x00\x00WAVE", "wav"),
        (b"ID3\x04", "mp3"),
        (b"\xff\xfb\x90", "mp3"),
        (b"\xff\xf1\x50", "aac"),
        (b"#EXTM3U\n", None),
        (b"ffconcat version 1.0\n", None),
        (b"<?xml ", None),
    ],
)
def test_container_allowlist(head, container):
    assert sniff_container(head) == container


def test_every_accepted_container_decodes_to_the_same_audio(tmp_path):
    import soundfile as sf
    from audio_files import CODECS, encode

    t = np.arange(3 * 16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)).astype(np.float32)  # bursts
    sf.write(tmp_path / "src.wav", tone, 16000)
    reference = decode_audio((tmp_path / "src.wav").read_bytes(), LIMITS)
    for suffix in CODECS:
        got = decode_audio(encode(tmp_path / "src.wav", tmp_path / f"src.{suffix}").read_bytes(), LIMITS)
        assert abs(len(got) - len(reference)) < 0.1 * 16000, suffix
        n = min(len(got), len(reference))
        # lossy codecs shift and colour the signal; the loudness envelope still matches
        env = [np.sqrt(np.mean(np.square(a[: n - n % 1600].reshape(-1, 1600)), axis=1)) for a in (got, reference)]
        assert np.corrcoef(*env)[0, 1] > 0.95, suffix
