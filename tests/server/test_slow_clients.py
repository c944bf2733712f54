"""Slow and unauthenticated clients against the real uvicorn server and app (no engine: the lifespan is off, and none
of these requests gets as far as the engine). Deadlines are short here; each test waits on the server's answer or
its closing of the socket, not on a clock."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from conftest import free_port

from whisper_inference.api.app import create_app
from whisper_inference.api.server import uvicorn_config
from whisper_inference.config import ConfigError, load_settings

pytestmark = pytest.mark.server  # a real uvicorn on loopback: not the offline unit tier


@dataclass
class Running:
    port: int
    keyfile: object


@pytest.fixture
def server(tmp_path) -> Iterator[Running]:
    keyfile = tmp_path / "keys"
    keyfile.write_text("file-key\n")
    settings = load_settings(
        model_id="/nonexistent/model",
        api_key_file=str(keyfile),
        host="127.0.0.1",
        port=free_port(),
        header_timeout_seconds=1,
        body_timeout_seconds=1,
    )
    srv = uvicorn.Server(uvicorn_config(create_app(settings, gpu_detector=lambda: None), settings, lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        threading.Event().wait(0.01)
    yield Running(settings.port, keyfile)
    srv.should_exit = True
    thread.join(10)


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)  # the bound: the server cuts at 1 s
    return s


def read_all(s: socket.socket) -> bytes:
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


MULTIPART_HEAD = (
    b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: multipart/form-data; boundary=XX\r\nContent-Length: 10000000\r\n"
)


def test_unfinished_headers_are_cut(server):
    with connect(server.port) as s:
        s.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert read_all(s) == b""  # closed by the server, not by our 30 s socket timeout


def test_trickled_body_gets_408(server):
    with connect(server.port) as s:
        s.sendall(MULTIPART_HEAD + b"Authorization: Bearer file-key\r\n\r\n--XX\r\n")
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"BODY_TIMEOUT_SECONDS" in answer


def test_401_before_the_body_is_read(server):
    """The server answers while the 10 MB body it was promised has not been sent."""
    with connect(server.port) as s:
        s.sendall(MULTIPART_HEAD + b"Authorization: Bearer wrong\r\n\r\n--XX\r\n")
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 401") and b"invalid_api_key" in answer, answer[:300]


def test_emptied_key_file_fails_closed_with_503(server):
    import httpx

    url = f"http://127.0.0.1:{server.port}"
    assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer file-key"}).status_code == 200
    server.keyfile.write_text("")  # a half-written Secret
    for headers in ({}, {"Authorization": "Bearer file-key"}, {"Authorization": "Bearer anything"}):
        r = httpx.get(url + "/v1/models", headers=headers)
        assert r.status_code == 503 and r.json()["error"]["code"] == "auth_unavailable", r.text
    assert httpx.get(url + "/health").status_code == 200  # probes stay open


def test_docs_and_schema_need_the_key_when_keys_are_set(server):
    import httpx

    url = f"http://127.0.0.1:{server.port}"
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(url + path).status_code == 401, path
        assert httpx.get(url + path, headers={"Authorization": "Bearer file-key"}).status_code == 200, path


def test_health_discloses_no_paths(server):
    import httpx

    assert "/nonexistent" not in httpx.get(f"http://127.0.0.1:{server.port}/health").text


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_key_file_refuses_to_start(tmp_path, content):
    keyfile = tmp_path / "keys"
    keyfile.write_text(content)
    with pytest.raises(ConfigError, match="API_KEY_FILE: .*holds no key"):
        load_settings(model_id="m", api_key_file=str(keyfile))


def test_401_is_counted_by_route(tmp_path):
    """The middleware answers before routing; the metrics still name the route."""
    from fastapi.testclient import TestClient

    app = create_app(load_settings(model_id="/nonexistent/model", api_key="k"), gpu_detector=lambda: None)
    client = TestClient(app)
    assert client.post("/v1/audio/transcriptions").status_code == 401
    assert 'route="/v1/audio/transcriptions",status="401"' in client.get("/metrics").text
