"""A server whose default is VAD windows (CHUNKING_STRATEGY=auto, what the operator gives CPU endpoints): a request
with chunking_strategy=none (our extension) opts out and is decoded in fixed windows."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
import soundfile as sf

from helpers import wer

pytestmark = pytest.mark.engine
RATE = 16000


@pytest.fixture(scope="module")
def ct2_vad_default(start_server, model_tiny_en):
    return start_server(
        model_tiny_en, ENGINE="ctranslate2", CHUNKING_STRATEGY="auto", SERVED_MODEL_NAME="whisper-tiny.en"
    )


def post(server, audio: bytes, **data: str) -> dict:
    r = httpx.post(
        server.url + "/v1/audio/transcriptions",
        files={"file": ("a.wav", audio, "audio/wav")},
        data={"model": "whisper-tiny.en", "response_format": "verbose_json", **data},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_none_opts_out_of_the_server_vad_default(ct2_vad_default, fixtures_dir):
    """30 s of low noise (-50 dBFS): the server's VAD default finds no speech, so nothing is decoded (no segment);
    with chunking_strategy=none the same upload is decoded as one fixed window from 0 s, and tiny.en hallucinates on
    it (". . ." in 2 s segments on CTranslate2, measured): a segment at all is the proof the window was decoded."""
    noise = (0.003 * np.random.default_rng(7).standard_normal(30 * RATE)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, noise, RATE, format="WAV", subtype="PCM_16")
    default = post(ct2_vad_default, buf.getvalue(), language="en")
    assert default["text"] == "" and default["segments"] == [], default
    assert post(ct2_vad_default, buf.getvalue(), language="en", chunking_strategy="auto") == default
    fixed = post(ct2_vad_default, buf.getvalue(), language="en", chunking_strategy="none")
    assert fixed["segments"], "chunking_strategy=none decoded nothing: VAD was still applied"
    assert fixed["segments"][0]["start"] == 0.0 and fixed["duration"] == pytest.approx(30.0, abs=0.01)
    # and speech is still transcribed in fixed windows
    speech = post(ct2_vad_default, (fixtures_dir / "jfk.wav").read_bytes(), chunking_strategy="none")
    assert wer((fixtures_dir / "jfk.txt").read_text(), speech["text"]) < 0.15, speech["text"]
