"""The rest of the OpenAI audio contract, through the official SDK against the real engine."""

from __future__ import annotations

import httpx
import pytest
from openai import BadRequestError, OpenAI

from helpers import JFK, SEGMENT_FIELDS, wer

pytestmark = pytest.mark.engine


def client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="dummy", max_retries=0, timeout=120)


def test_translation_of_german_into_english(base_server, fixtures_dir):
    with open(fixtures_dir / "de1.wav", "rb") as f:
        result = client(base_server).audio.translations.create(model="whisper", file=f, response_format="verbose_json")
    assert result.task == "translate" and result.language == "german"
    words = set(result.text.lower().replace(",", " ").replace("?", " ").replace(".", " ").split())
    assert {"good", "morning"} <= words, result.text  # English, not "Guten Morgen"


def test_translation_refused_on_english_only_model(tiny_server, fixtures_dir):
    with open(fixtures_dir / "jfk.wav", "rb") as f, pytest.raises(BadRequestError) as exc:
        client(tiny_server).audio.translations.create(model="whisper", file=f)
    assert exc.value.body["code"] == "unsupported_task"


def test_verbose_json_is_shaped_like_openai(base_server, fixtures_dir):
    with open(fixtures_dir / "jfk.wav", "rb") as f:
        r = httpx.post(
            base_server.url + "/v1/audio/transcriptions",
            data={"model": "whisper-1", "response_format": "verbose_json", "timestamp_granularities[]": "segment"},
            files={"file": f},
            timeout=120,
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"task", "language", "duration", "text", "segments", "usage"}
    assert body["usage"] == {"type": "duration", "seconds": 11}
    seg = body["segments"][0]
    assert set(seg) == SEGMENT_FIELDS
    assert 0 <= seg["no_speech_prob"] < 0.5 and seg["avg_logprob"] < 0 and seg["compression_ratio"] > 0
    assert all(isinstance(t, int) for t in seg["tokens"])
    ends = [s["end"] for s in body["segments"]]
    assert ends == sorted(ends) and ends[-1] <= body["duration"]


@pytest.mark.parametrize("fmt,head", [("srt", "1\n00:00:00,000 --> "), ("vtt", "WEBVTT\n\n00:00:00.000 --> ")])
def test_subtitles(base_server, fixtures_dir, fmt, head):
    with open(fixtures_dir / "jfk.wav", "rb") as f:
        text = client(base_server).audio.transcriptions.create(model="whisper", file=f, response_format=fmt)
    assert text.startswith(head), text
    assert (
        wer(
            JFK,
            " ".join(
                line
                for line in text.splitlines()
                if line and "-->" not in line and not line.isdigit() and line != "WEBVTT"
            ),
        )
        < 0.15
    )


def test_unknown_granularity_is_refused_not_ignored(tiny_server, fixtures_dir):
    # word is served since issue 11 (tests/engine/test_words_logprobs.py); anything else is refused
    with open(fixtures_dir / "jfk.wav", "rb") as f, pytest.raises(BadRequestError) as exc:
        client(tiny_server).audio.transcriptions.create(
            model="whisper", file=f, response_format="verbose_json", timestamp_granularities=["character"]
        )
    assert exc.value.body["param"] == "timestamp_granularities" and "segment or word" in exc.value.body["message"]


def test_segment_granularity_through_sdk(tiny_server, fixtures_dir):
    with open(fixtures_dir / "jfk.wav", "rb") as f:
        result = client(tiny_server).audio.transcriptions.create(
            model="whisper", file=f, response_format="verbose_json", timestamp_granularities=["segment"]
        )
    assert result.segments and wer(JFK, result.text) < 0.15


def test_stream_with_the_sdk(tiny_server, fixtures_dir):
    with open(fixtures_dir / "jfk.wav", "rb") as f:
        events = list(client(tiny_server).audio.transcriptions.create(model="whisper", file=f, stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"}
    assert len(kinds) > 5  # token by token, not one blob
    deltas = "".join(e.delta for e in events[:-1])
    assert deltas == events[-1].text and wer(JFK, deltas) < 0.15


def test_prompt_is_previous_text_context(tiny_server, fixtures_dir):
    """The prompt is Whisper's previous-text context: it steers style, as with OpenAI."""

    def transcribe(prompt):
        with open(fixtures_dir / "jfk.wav", "rb") as f:
            return client(tiny_server).audio.transcriptions.create(model="whisper", file=f, prompt=prompt).text

    plain = transcribe(None)
    chatty = transcribe("Umm, let me think like, hmm... Okay, here's what I'm, like, thinking.")
    shouting = transcribe("AND SO MY FELLOW AMERICANS")
    assert wer(JFK, chatty) < 0.3 and chatty != plain
    assert "NOT" in shouting and "NOT" not in plain


def test_temperature_samples(tiny_server, fixtures_dir):
    outs = set()
    for _ in range(3):
        with open(fixtures_dir / "en2.wav", "rb") as f:
            outs.add(client(tiny_server).audio.transcriptions.create(model="whisper", file=f, temperature=1.0).text)
    with open(fixtures_dir / "en2.wav", "rb") as f:
        greedy = client(tiny_server).audio.transcriptions.create(model="whisper", file=f, temperature=0).text
    assert len(outs) > 1 or greedy not in outs  # sampling at 1.0 varies; greedy is deterministic


@pytest.mark.parametrize("container", ["flac", "mp3", "ogg", "m4a", "webm"])
def test_compressed_uploads(tiny_server, fixtures_dir, tmp_path, container):
    from audio_files import encode

    path = encode(fixtures_dir / "jfk.wav", tmp_path / f"jfk.{container}")
    with open(path, "rb") as f:
        text = client(tiny_server).audio.transcriptions.create(model="whisper", file=f).text
    assert wer(JFK, text) < 0.15, (container, text)


def test_language_force_and_timestamps_none(start_server, model_base, fixtures_dir):
    """LANGUAGE_FORCE beats the request's language; TIMESTAMPS=none gives one segment per window."""
    server = start_server(model_base, LANGUAGE_FORCE="english", TIMESTAMPS="none")
    with open(fixtures_dir / "de1.wav", "rb") as f:
        result = client(server).audio.transcriptions.create(
            model="whisper", file=f, language="de", response_format="verbose_json"
        )
    assert result.language == "english"  # forced, although German was asked for and is spoken
    assert len(result.segments) == 1
    assert (result.segments[0].start, result.segments[0].end) == (0.0, result.duration)
    with open(fixtures_dir / "jfk.wav", "rb") as f:
        srt = client(server).audio.transcriptions.create(model="whisper", file=f, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:11,000\n") and "\n2\n" not in srt
    server.stop()
