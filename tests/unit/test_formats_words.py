"""Rendering of issue 11's fields: words, word cues, logprobs, the stream's usage."""

import pytest

from whisper_inference.engine.token_logprobs import TokenLogprob
from whisper_inference.engine.words import Word
from whisper_inference.formats.render import render, stream_usage
from whisper_inference.transcriber import Plan, Segment, Transcript

pytestmark = pytest.mark.unit


def transcript(**kw):
    segs = [Segment(0, 0, 0.0, 2.5, " Hello there.", [1, 2], 0.0, -0.2, 1.1, 0.01)]
    words = [Word("Hello", 0.1, 0.6), Word("there.", 0.7, 1.2)]
    return Transcript("transcribe", "en", 2.5, "Hello there.", segs, words=words, **kw)


def test_verbose_json_words_and_segments():
    body = render(transcript(), "verbose_json")
    assert body["words"] == [{"word": "Hello", "start": 0.1, "end": 0.6}, {"word": "there.", "start": 0.7, "end": 1.2}]
    assert len(body["segments"]) == 1
    assert "segments" not in render(transcript(show_segments=False), "verbose_json")


def test_word_cues_only_when_asked():
    assert render(transcript(), "srt") == "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n"
    assert render(transcript(), "srt", 1) == (
        "1\n00:00:00,100 --> 00:00:00,600\nHello\n\n2\n00:00:00,700 --> 00:00:01,200\nthere.\n"
    )
    assert render(transcript(), "vtt", 5) == "WEBVTT\n\n00:00:00.100 --> 00:00:01.200\nHello there.\n"


def test_json_logprobs():
    t = transcript(logprobs=[TokenLogprob(" Hello", -0.5, list(b" Hello"))])
    assert render(t, "json")["logprobs"] == [{"token": " Hello", "logprob": -0.5, "bytes": list(b" Hello")}]
    assert "logprobs" not in render(transcript(), "json")


def test_stream_usage_counts_audio_prompt_and_output():
    plan = Plan(duration=10.01, windows=[], language="en", decoder_ids=[1, 2, 3, 4])
    assert stream_usage(plan, 7) == {
        "type": "tokens",
        "input_tokens": 501 + 4,
        "output_tokens": 7,
        "total_tokens": 512,
        "input_token_details": {"audio_tokens": 501, "text_tokens": 4},
    }
