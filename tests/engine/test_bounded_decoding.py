"""Decompression bombs and stalls against the real server: refused with 400 naming the limit, in bounded time and
bounded memory (resident set of the server's process tree, read from /proc while the request runs), and /health
answering while uploads decode."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from audio_bombs import one_hertz_wav, silent_flac, wav, without_declared_length

pytestmark = pytest.mark.engine
SDP = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nm=audio 5004 RTP/AVP 0\r\n"  # 47+ bytes


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (the decode workers)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue  # the process ended meanwhile
    return total


def post_measured(server, content: bytes, name: str) -> tuple[httpx.Response, int]:
    """POST an upload; return the response and the peak growth of the server tree's RSS while it ran."""
    base = tree_rss(server.proc.pid)
    peak, done = base, threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, tree_rss(server.proc.pid))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        # the bound on time: the old server decoded and transcribed these for minutes
        r = httpx.post(
            server.url + "/v1/audio/transcriptions",
            data={"model": "whisper"},
            files={"file": (name, content)},
            timeout=60,
        )
    finally:
        done.set()
        watcher.join()
    return r, peak - base


BOMBS = {
    # name: (upload, code, what the message names)
    "one_hertz.wav": (lambda: one_hertz_wav(), "invalid_audio", "4000-192000 Hz"),
    "two_gigahertz.wav": (lambda: wav(2_000_000_000, 1, 100), "invalid_audio", "4000-192000 Hz"),
    "channels_1024.wav": (lambda: wav(16000, 1024, 4), "invalid_audio", "1 to 8"),
    "one_sample.wav": (lambda: wav(16000, 1, 1), "audio_too_short", "0.1 s"),
    "silence_declared.flac": (lambda: silent_flac(3600), "audio_too_long", "MAX_AUDIO_SECONDS"),
    "silence_undeclared.flac": (lambda: without_declared_length(silent_flac(3600)), "audio_too_long", "120 s"),
    "eight_channels_undeclared.flac": (
        lambda: without_declared_length(silent_flac(3600, channels=8)),
        "audio_too_long",
        "MAX_AUDIO_SECONDS",
    ),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bombs_are_refused_in_bounded_time_and_memory(tiny_server, name):
    make, code, names = BOMBS[name]
    r, grown = post_measured(tiny_server, make(), name)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["param"] == "file" and names in err["message"], err
    # an hour at 16 kHz float32 is 230 MB (and the old server's peak was 1.1 GB); the cap is 120 s (7.7 MB)
    assert grown < 100 * 2**20, f"the server's RSS grew by {grown / 2**20:.0f} MiB"


def test_sdp_is_refused_at_once_while_health_answers(tiny_server):
    """FFmpeg's content sniffing picks its `sdp` demuxer for this text, which binds UDP ports and waits."""
    result: dict[str, httpx.Response] = {}
    sent = threading.Event()

    def upload() -> None:
        try:
            result["r"] = httpx.post(
                tiny_server.url + "/v1/audio/transcriptions",
                data={"model": "whisper"},
                files={"file": ("x.sdp", SDP)},
                timeout=60,
            )
        finally:
            sent.set()

    threading.Thread(target=upload).start()
    probes = 0
    while not sent.is_set() or probes == 0:
        assert httpx.get(tiny_server.url + "/health", timeout=1).status_code == 200  # a stalled loop times out
        probes += 1
    r = result["r"]
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_audio", r.text
    assert "not in a supported audio format" in r.json()["error"]["message"]


def test_health_answers_while_uploads_decode(tiny_server, fixtures_dir, tmp_path):
    """Four 110 s uploads at 44.1 kHz decode and resample at once; /health answers within 1 s throughout."""
    import numpy as np
    import soundfile as sf
    import soxr

    jfk, rate = sf.read(fixtures_dir / "jfk.wav", dtype="float32")
    long = np.tile(np.concatenate([jfk, np.zeros(rate // 2, np.float32)]), 10)[: 110 * rate]
    sf.write(tmp_path / "long.wav", soxr.resample(long, rate, 44100), 44100)
    upload = (tmp_path / "long.wav").read_bytes()
    statuses: list[int] = []
    finished = threading.Event()

    def one() -> None:
        statuses.append(
            httpx.post(
                tiny_server.url + "/v1/audio/transcriptions",
                data={"model": "whisper"},
                files={"file": ("long.wav", upload)},
                timeout=600,
            ).status_code
        )
        if len(statuses) == 4:
            finished.set()

    for _ in range(4):
        threading.Thread(target=one).start()
    probes = 0
    while not finished.is_set() or probes == 0:
        assert httpx.get(tiny_server.url + "/health", timeout=1).status_code == 200
        probes += 1
    assert statuses == [200] * 4


@pytest.fixture(scope="module")
def impatient(start_server, model_tiny_en):
    """A decode deadline no decode can meet (a worker process alone takes longer to start)."""
    return start_server(model_tiny_en, DECODE_TIMEOUT_SECONDS="0.001")


def test_decode_deadline_answers_400(impatient, fixtures_dir):
    r = httpx.post(
        impatient.url + "/v1/audio/transcriptions",
        data={"model": "whisper"},
        files={"file": ("jfk.wav", (fixtures_dir / "jfk.wav").read_bytes())},
        timeout=60,
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_audio" and "DECODE_TIMEOUT_SECONDS" in err["message"]
    assert httpx.get(impatient.url + "/health", timeout=5).status_code == 200
