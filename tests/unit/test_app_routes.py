"""The app's route table and middleware, without an engine (the lifespan is not run)."""

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from whisper_inference.api.app import create_app
from whisper_inference.api.auth import require_api_key
from whisper_inference.config import load_settings

pytestmark = pytest.mark.unit


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setenv("MODEL_ID", "/nonexistent/model")
    monkeypatch.setenv("API_KEY", "k1, k2")
    monkeypatch.setenv("MAX_UPLOAD_MB", "1")
    return create_app(load_settings(), gpu_detector=lambda: None)


def test_every_v1_route_requires_the_key(app):
    v1 = [r for r in app.routes if isinstance(r, APIRoute) and r.path.startswith("/v1")]
    assert {r.path for r in v1} >= {"/v1/audio/transcriptions", "/v1/audio/translations", "/v1/models"}
    for route in v1:
        assert any(d.call is require_api_key for d in route.dependant.dependencies), route.path
    client = TestClient(app)
    for route in v1:
        for method in route.methods:
            r = client.request(method, route.path)
            assert r.status_code == 401, (method, route.path)
            assert r.json()["error"]["code"] == "invalid_api_key"
            assert client.request(method, route.path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer k2"}).status_code == 200


def test_probes_and_metrics_stay_open(app):
    client = TestClient(app)
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["reason"] == "loading"  # model never started here
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "whisper_requests_total" in metrics.text


def test_upload_limit_by_content_length_and_while_streaming(app):
    client = TestClient(app)
    auth = {"Authorization": "Bearer k1"}
    big = b"\0" * (2 * 2**20)
    r = client.post("/v1/audio/transcriptions", headers=auth, data={"model": "whisper"}, files={"file": ("a.wav", big)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
    assert "MAX_UPLOAD_MB" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit must trip while the body streams in
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 65536

    r = client.post(
        "/v1/audio/transcriptions",
        content=chunks(),
        headers={**auth, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert r.status_code == 413 and r.json()["error"]["param"] == "file"


def test_not_ready_is_503_openai_shaped(app):
    client = TestClient(app)
    r = client.post(
        "/v1/audio/transcriptions",
        headers={"Authorization": "Bearer k1"},
        data={"model": "whisper"},
        files={"file": ("a.wav", b"RIFF")},
    )
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["error"]["code"] == "not_ready"


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/audio/translations"])
def test_chunking_strategy_is_read_by_both_routes(app, path):
    """Both routes parse chunking_strategy (translations as our extension, so that a request can opt out of
    CHUNKING_STRATEGY there too) before anything needs the engine: a bad value is a 400 naming it, none is
    accepted (the request goes on and stops at the missing file)."""
    client = TestClient(app)
    auth = {"Authorization": "Bearer k1"}
    form = {"model": "whisper-1"}
    r = client.post(path, headers=auth, data={**form, "chunking_strategy": "sometimes"}, files={"x": ("x", b"")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "chunking_strategy", r.text
    r = client.post(path, headers=auth, data={**form, "chunking_strategy": "none"}, files={"x": ("x", b"")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file", r.text
