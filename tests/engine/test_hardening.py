"""Auth, limits, back-pressure, disconnects, metrics, logs, fuzzing and graceful shutdown, for real."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from openai import AuthenticationError, OpenAI

from helpers import JFK, wer

pytestmark = pytest.mark.engine
KEY = {"Authorization": "Bearer secret-2"}


@pytest.fixture(scope="module")
def guarded(start_server, model_tiny_en, tmp_path_factory):
    keyfile = tmp_path_factory.mktemp("keys") / "keys"
    keyfile.write_text("secret-2\n")
    return start_server(
        model_tiny_en,
        API_KEY="secret-1",
        API_KEY_FILE=str(keyfile),
        MAX_UPLOAD_MB="20",
        MAX_CONCURRENT_REQUESTS="1",
        MAX_QUEUE="0",
        GRACE_PERIOD_SECONDS="60",
    )


def speech(fixtures_dir, tmp_path_factory, repeats: int) -> bytes:
    """Real speech of any length: the JFK clip and half a second of silence, repeated, as FLAC."""
    jfk, rate = sf.read(fixtures_dir / "jfk.wav", dtype="float32")
    path = tmp_path_factory.mktemp("speech") / f"jfk-{repeats}.flac"
    sf.write(path, np.tile(np.concatenate([jfk, np.zeros(rate // 2, np.float32)]), repeats), rate)
    return path.read_bytes()


@pytest.fixture(scope="module")
def long_wav(fixtures_dir, tmp_path_factory) -> bytes:
    """About 9 minutes, 18 windows: seconds of engine work on this CPU."""
    return speech(fixtures_dir, tmp_path_factory, 48)


@pytest.fixture(scope="module")
def medium_wav(fixtures_dir, tmp_path_factory) -> bytes:
    """About 2.3 minutes, 5 windows."""
    return speech(fixtures_dir, tmp_path_factory, 12)


def metric(server, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    m = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def post(server, content: bytes, timeout: float = 120, headers=KEY, **data) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/audio/transcriptions",
        headers=headers,
        data={"model": "whisper", **data},
        files={"file": ("a.flac", content)},
        timeout=timeout,
    )


def test_api_key_with_the_sdk(guarded, fixtures_dir):
    with open(fixtures_dir / "jfk.wav", "rb") as f:
        ok = OpenAI(base_url=guarded.url + "/v1", api_key="secret-1", max_retries=0).audio.transcriptions.create(
            model="whisper", file=f
        )
    assert wer(JFK, ok.text) < 0.15
    with open(fixtures_dir / "jfk.wav", "rb") as f, pytest.raises(AuthenticationError) as exc:
        OpenAI(base_url=guarded.url + "/v1", api_key="dummy", max_retries=0).audio.transcriptions.create(
            model="whisper", file=f
        )
    assert exc.value.status_code == 401 and exc.value.body["code"] == "invalid_api_key"
    assert httpx.get(guarded.url + "/v1/models").status_code == 401
    for open_route in ("/health", "/ready", "/metrics"):
        assert httpx.get(guarded.url + open_route).status_code == 200


def test_upload_limit_413(guarded):
    r = post(guarded, b"\0" * (21 * 2**20))
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"


def wait_until(condition, what: str, timeout: float = 60) -> None:
    """Poll `condition` until true; the timeout only bounds a failure, no outcome depends on it."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def send_and_hold(server, content: bytes) -> socket.socket:
    """A transcription request written to a raw socket whose response is never read: the connection stays open
    until the test closes it (the client's disconnect, at the moment the test chooses)."""
    req = httpx.Request(
        "POST",
        server.url + "/v1/audio/transcriptions",
        headers=KEY,
        data={"model": "whisper"},
        files={"file": ("a.flac", content)},
    )
    body = req.read()
    head = "".join(f"{k}: {v}\r\n" for k, v in req.headers.items() if k.lower() != "transfer-encoding")
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\n{head}\r\n".encode() + body)
    return sock


def test_queue_full_429_then_disconnect_aborts_engine_work(guarded, long_wav, medium_wav):
    """Event driven: a long request is held in flight by its client (an open connection whose answer nobody reads);
    a second one meets the full queue (429); once the engine is seen working on the first, its client disconnects,
    and every engine request of it is aborted (499 in the access log), leaving the server serving."""
    held = send_and_hold(guarded, long_wav)
    try:
        wait_until(lambda: metric(guarded, "whisper_in_flight") >= 1, "the held request to be admitted")
        busy = post(guarded, long_wav[:100000], timeout=30)
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["type"] == "rate_limit_error"
        wait_until(lambda: metric(guarded, "whisper_engine_requests") >= 1, "the engine to work on the held request")
    finally:
        held.shutdown(socket.SHUT_RDWR)
        held.close()
    # 18 windows take the engine seconds; the disconnect came milliseconds after it started on them
    wait_until(lambda: metric(guarded, "whisper_engine_requests") == 0, "the engine requests to be aborted")
    wait_until(lambda: metric(guarded, "whisper_in_flight") == 0, "the admission slot to be freed")
    wait_until(lambda: '"status": 499' in guarded.log_path.read_text(), "the 499 access-log line", timeout=10)
    assert post(guarded, medium_wav).status_code == 200  # and the server keeps serving


def test_metrics_and_access_log(guarded, fixtures_dir):
    before = metric(guarded, "whisper_audio_seconds_total")
    with open(fixtures_dir / "jfk.wav", "rb") as f:
        assert post(guarded, f.read()).status_code == 200
    text = httpx.get(guarded.url + "/metrics").text
    assert metric(guarded, "whisper_audio_seconds_total") == pytest.approx(before + 11.0, abs=0.01)
    assert re.search(r'whisper_requests_total\{route="/v1/audio/transcriptions",status="200"\} [1-9]', text)
    assert re.search(r'whisper_requests_total\{route="/v1/audio/transcriptions",status="401"\} [1-9]', text)
    for name in (
        "whisper_request_latency_seconds_bucket",
        "whisper_real_time_factor_bucket",
        "whisper_queue_depth",
        "whisper_engine_errors_total",
    ):
        assert name in text
    lines = [line for line in guarded.log_path.read_text().splitlines() if "kubewhisper.access" in line]
    assert lines and '"audio_seconds": 11.0' in "\n".join(lines) and '"rtf":' in lines[-1]
    assert "fellow Americans" not in guarded.log_path.read_text()  # no transcript content in logs


FUZZ = {
    "truncated_wav": lambda jfk: jfk[:30],
    "zero_length": lambda jfk: b"",
    "random_bytes": lambda jfk: np.random.default_rng(0).bytes(50000),
    "huge_header": lambda jfk: b"RIFF\xff\xff\xff\x7fWAVEfmt " + b"\xff" * 2000,
    "header_only": lambda jfk: jfk[:44],
    "text_file": lambda jfk: b"hello, I am not audio\n" * 100,
    "pdf_magic": lambda jfk: b"%PDF-1.7\n" + b"\0" * 1000,
    "ogg_magic_garbage": lambda jfk: b"OggS" + b"\x01" * 5000,
}


@pytest.mark.parametrize("case", sorted(FUZZ))
def test_fuzzed_uploads_get_4xx(guarded, fixtures_dir, case):
    body = FUZZ[case]((fixtures_dir / "jfk.wav").read_bytes())
    r = post(guarded, body, timeout=60)
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_odd_forms_and_names(guarded, fixtures_dir):
    jfk = (fixtures_dir / "jfk.wav").read_bytes()
    # wrong extension, non-UTF-8 file name, unknown fields: the audio still decodes and is transcribed
    r = httpx.post(
        guarded.url + "/v1/audio/transcriptions",
        headers=KEY,
        data={"model": "whisper", "foo": "bar", "stream_options": "x"},
        files={"file": ("r\xe9sum\xe9.mp3".encode("latin-1").decode("latin-1"), jfk, "image/png")},
        timeout=60,
    )
    assert r.status_code == 200 and wer(JFK, r.json()["text"]) < 0.15
    raw = (
        b'--XX\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="file"; filename="\xff\xfe.wav"\r\n\r\n'
        + jfk
        + b"\r\n--XX--\r\n"
    )
    r = httpx.post(
        guarded.url + "/v1/audio/transcriptions",
        content=raw,
        timeout=60,
        headers={**KEY, "Content-Type": "multipart/form-data; boundary=XX"},
    )
    assert r.status_code in (200, 400), r.text
    for broken in (b"--XX\r\nnot a header\r\n", b"garbage", b"--XX--"):
        r = httpx.post(
            guarded.url + "/v1/audio/transcriptions",
            content=broken,
            timeout=30,
            headers={**KEY, "Content-Type": "multipart/form-data; boundary=XX"},
        )
        assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(guarded.url + "/v1/audio/transcriptions", json={"model": "whisper"}, headers=KEY)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_content_type"
    assert httpx.get(guarded.url + "/ready").status_code == 200


def fuzz_operation(operation, failures: list) -> None:
    """Generated requests against one API operation; a 5xx is recorded in `failures` and fails the check."""
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    @settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case):
        response = case.call(headers=KEY, timeout=60)
        if response.status_code >= 500:
            failures.append((operation.label, response.status_code, response.text[:200]))
        case.validate_response(response, checks=[not_a_server_error])

    check()


def test_schemathesis_finds_no_500(guarded):
    import schemathesis

    schema = schemathesis.openapi.from_url(guarded.url + "/openapi.json", headers=KEY)  # behind the key too
    failures: list = []
    for op in schema.get_all_operations():
        fuzz_operation(op.ok(), failures)
    assert not failures


def refused(server) -> bool:
    """True once the server no longer accepts connections (any answer, even an error, means it still listens)."""
    try:
        httpx.get(server.url + "/health", timeout=5)
    except httpx.TransportError:
        return True
    return False


def test_graceful_shutdown_finishes_in_flight_work(guarded, medium_wav):
    """Last in this module: SIGTERM while a request runs; it completes, new work is refused, exit 0."""
    result = {}
    audio = medium_wav  # a few seconds of work
    t = threading.Thread(target=lambda: result.setdefault("r", post(guarded, audio, timeout=120)))
    t.start()
    wait_until(lambda: metric(guarded, "whisper_engine_requests") >= 1, "the engine to work on the request")
    guarded.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: refused(guarded), "the listener to close")  # nothing new gets in
    t.join()
    assert result["r"].status_code == 200 and len(result["r"].json()["text"]) > 100
    assert guarded.proc.wait(60) == 0
