"""Encode a WAV into other containers with PyAV (its wheel carries FFmpeg's encoders)."""

from __future__ import annotations

from pathlib import Path

CODECS = {
    "flac": ("flac", "flac"),
    "mp3": ("mp3", "libmp3lame"),
    "ogg": ("ogg", "libopus"),
    "m4a": ("mp4", "aac"),
    "webm": ("webm", "libopus"),
}


def encode(src: Path, dst: Path) -> Path:
    import av

    fmt, codec = CODECS[dst.suffix.lstrip(".")]
    rate = 48000 if codec == "libopus" else 16000
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for frame in inp.decode(audio=0):
            for f in resampler.resample(frame):
                for packet in stream.encode(f):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return dst
