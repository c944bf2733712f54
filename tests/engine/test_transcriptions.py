"""The real server (subprocess), real vLLM engine, real Whisper weights, the official openai SDK."""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI

from helpers import JFK, wer

pytestmark = pytest.mark.engine


def client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="dummy", max_retries=0, timeout=120)


@pytest.mark.parametrize("fmt", ["json", "text", "verbose_json"])
def test_jfk_through_openai_sdk(tiny_server, fixtures_dir, fmt):
    with open(fixtures_dir / "jfk.wav", "rb") as f:
        result = client(tiny_server).audio.transcriptions.create(model="whisper", file=f, response_format=fmt)
    text = result if isinstance(result, str) else result.text
    assert wer(JFK, text) < 0.15, text
    if fmt == "verbose_json":
        assert result.language == "english" and abs(result.duration - 11.0) < 0.1
        assert result.segments and result.segments[0].start == 0.0
        assert result.segments[-1].end <= result.duration + 1e-6
        assert all(s.avg_logprob < 0 for s in result.segments)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_synthesized_sentences(tiny_server, fixtures_dir, n):
    with open(fixtures_dir / f"en{n}.wav", "rb") as f:
        text = client(tiny_server).audio.transcriptions.create(model="whisper-1", file=f).text
    assert wer((fixtures_dir / f"en{n}.txt").read_text(), text) < 0.35, text


def test_readme_curl_form(tiny_server, fixtures_dir):
    """What the README's curl commands send: Bearer dummy, -F model=whisper, -F file=@jfk.wav."""
    with open(fixtures_dir / "jfk.wav", "rb") as f:
        r = httpx.post(
            tiny_server.url + "/v1/audio/transcriptions",
            headers={"Authorization": "Bearer dummy"},
            data={"model": "whisper", "response_format": "text"},
            files={"file": ("jfk.wav", f, "audio/wav")},
            timeout=120,
        )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert wer(JFK, r.text) < 0.15


def test_long_audio_is_chunked_with_real_offsets(tiny_server, fixtures_dir, tmp_path):
    """Real speech past one 30 s window: segments from every window, offset by its real start."""
    import numpy as np
    import soundfile as sf

    names = ["jfk", "en1", "en2", "en3", "jfk"]
    clips = [sf.read(fixtures_dir / f"{n}.wav", dtype="float32")[0] for n in names]
    rate = 16000
    gap = np.zeros(rate, np.float32)
    long = np.concatenate([part for clip in clips for part in (clip, gap)])
    reference = " ".join(JFK if n == "jfk" else (fixtures_dir / f"{n}.txt").read_text().strip() for n in names)
    path = tmp_path / "long.wav"
    sf.write(path, long, rate)
    with open(path, "rb") as f:
        result = client(tiny_server).audio.transcriptions.create(
            model="whisper", file=f, response_format="verbose_json"
        )
    assert abs(result.duration - len(long) / rate) < 0.05
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end <= result.duration + 1e-6
    assert len(long) / rate > 30 and max(starts) >= 30.0  # the second window contributed, offset by 30 s
    assert wer(reference, result.text) < 0.3, result.text


def test_audio_longer_than_limit_is_400(tiny_server, fixtures_dir, tmp_path):
    import numpy as np
    import soundfile as sf

    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(16000 * 121, np.float32), 16000)  # the fixture server allows 120 s
    with open(path, "rb") as f:
        r = httpx.post(
            tiny_server.url + "/v1/audio/transcriptions", data={"model": "whisper"}, files={"file": f}, timeout=60
        )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "file" and "120" in err["message"] and "MAX_AUDIO_SECONDS" in err["message"]


@pytest.mark.parametrize(
    "files,data,param",
    [
        ({"file": ("garbage.wav", b"\x00\x13garbage" * 500, "audio/wav")}, {"model": "whisper"}, "file"),
        ({"file": ("empty.wav", b"", "audio/wav")}, {"model": "whisper"}, "file"),
        ({"attachment": ("notes.txt", b"not the file field", "text/plain")}, {"model": "whisper"}, "file"),
        ({"file": ("x.wav", b"RIFF", "audio/wav")}, {"model": "whisper", "response_format": "xml"}, "response_format"),
        ({"file": ("x.wav", b"RIFF", "audio/wav")}, {}, "model"),
    ],
)
def test_bad_input_is_openai_shaped_400(tiny_server, files, data, param):
    r = httpx.post(tiny_server.url + "/v1/audio/transcriptions", data=data, files=files, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["param"] == param and err["message"]


def test_unknown_model_is_404(tiny_server, fixtures_dir):
    from openai import NotFoundError

    with open(fixtures_dir / "jfk.wav", "rb") as f, pytest.raises(NotFoundError) as exc:
        client(tiny_server).audio.transcriptions.create(model="gpt-4o-transcribe", file=f)
    assert exc.value.body["code"] == "model_not_found"


def test_english_only_model_rejects_other_language(tiny_server, fixtures_dir):
    from openai import BadRequestError

    with open(fixtures_dir / "jfk.wav", "rb") as f, pytest.raises(BadRequestError) as exc:
        client(tiny_server).audio.transcriptions.create(model="whisper", file=f, language="de")
    assert exc.value.body["param"] == "language"


def test_models_health_ready_docs(tiny_server):
    ids = [m.id for m in client(tiny_server).models.list().data]
    assert ids == ["whisper-tiny.en", "whisper", "whisper-1"]
    health = httpx.get(tiny_server.url + "/health").json()
    assert health["status"] == "ok" and health["dtype"] == "float32" and health["device"] == "cpu"
    assert httpx.get(tiny_server.url + "/ready").status_code == 200
    assert httpx.get(tiny_server.url + "/docs").status_code == 200
    paths = httpx.get(tiny_server.url + "/openapi.json").json()["paths"]
    assert {"/v1/audio/transcriptions", "/v1/audio/translations", "/v1/models"} <= set(paths)


def test_multilingual_detects_language(base_server, fixtures_dir):
    with open(fixtures_dir / "de1.wav", "rb") as f:
        result = client(base_server).audio.transcriptions.create(
            model="whisper-base", file=f, response_format="verbose_json"
        )
    assert result.language == "german"
    assert "guten morgen" in result.text.lower()
    with open(fixtures_dir / "jfk.wav", "rb") as f:
        result = client(base_server).audio.transcriptions.create(
            model="whisper", file=f, response_format="verbose_json"
        )
    assert result.language == "english" and wer(JFK, result.text) < 0.15


def test_language_given_is_used(base_server, fixtures_dir):
    with open(fixtures_dir / "jfk.wav", "rb") as f:
        result = client(base_server).audio.transcriptions.create(
            model="whisper", file=f, language="en", response_format="verbose_json"
        )
    assert result.language == "english" and wer(JFK, result.text) < 0.15
