import pytest

from helpers import SEGMENT_FIELDS
from whisper_inference.formats.render import render
from whisper_inference.transcriber import Segment, Transcript, compression_ratio, timed_decoding, wants_timestamps

pytestmark = pytest.mark.unit


def transcript():
    segs = [
        Segment(0, 0, 0.0, 2.5, " Hello there.", [1, 2], 0.0, -0.2, 1.1, 0.01),
        Segment(1, 3000, 30.0, 3723.456, " General Kenobi.", [3], 0.0, -0.3, 1.0, 0.02),
    ]
    return Transcript("transcribe", "en", 3725.2, "Hello there. General Kenobi.", segs)


def test_json_and_text():
    assert render(transcript(), "json") == {
        "text": "Hello there. General Kenobi.",
        "usage": {"type": "duration", "seconds": 3726},
    }
    assert render(transcript(), "text") == "Hello there. General Kenobi.\n"


def test_verbose_json_shape():
    body = render(transcript(), "verbose_json")
    assert body["language"] == "english" and body["task"] == "transcribe" and body["duration"] == 3725.2
    assert set(body["segments"][0]) == SEGMENT_FIELDS


def test_srt_and_vtt_clock():
    srt = render(transcript(), "srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n2\n00:00:30,000 --> 01:02:03,456\n")
    vtt = render(transcript(), "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n")
    assert "00:00:30.000 --> 01:02:03.456\nGeneral Kenobi." in vtt


def test_timestamps_policy():
    assert wants_timestamps("auto", "verbose_json") and wants_timestamps("auto", "srt")
    assert not wants_timestamps("auto", "json") and not wants_timestamps("none", "vtt")
    assert wants_timestamps("segments", "text")


def test_compression_ratio_flags_repetition():
    assert compression_ratio("la " * 200) > 2.4 > compression_ratio("And so my fellow Americans, ask not.")


def attempt(tokens: list[int], logprobs: list[float], no_speech: float = 0.01, temperature: float = 0.0):
    from whisper_inference.engine.interface import Generation
    from whisper_inference.engine.repetition import is_loop
    from whisper_inference.transcriber import Attempt

    return Attempt(Generation(tokens, [0.0] * len(tokens), no_speech), temperature, logprobs, is_loop(tokens))


SENTENCE = list(range(100, 128))  # the token ids of one 28-token sentence


def test_temperature_fallback_policy():
    assert not attempt(SENTENCE, [-0.2, -0.3]).failed
    assert attempt([7, 8] * 50, [-0.1] * 10).failed  # "thank you" x 50: a loop
    assert attempt(SENTENCE, [-1.5, -2.0]).failed  # unlikely text
    assert not attempt([7, 8] * 50, [-2.0] * 10, no_speech=0.9).failed  # silence: no retry
    assert not attempt(SENTENCE * 2 + SENTENCE[:20], [-0.2] * 5).failed  # 2.7 copies of a real sentence


def test_best_attempt_when_every_temperature_fails():
    from whisper_inference.transcriber import best_attempt

    looping = attempt([9] * 100, [-0.1] * 5)
    unlikely = attempt(SENTENCE, [-1.2] * 5)
    garbage = attempt(list(range(300, 310)), [-2.5] * 5, temperature=1.0)
    assert best_attempt([looping, unlikely, garbage]) is unlikely  # a loop loses to an unlikely text
    hotter_loop = attempt([9] * 90, [-0.3] * 5, temperature=0.2)
    assert best_attempt([looping, hotter_loop]) is looping  # both loop: the likelier
    assert best_attempt([unlikely, garbage]) is unlikely  # not the hot gibberish


def test_long_audio_is_decoded_timed_under_auto_whatever_the_format():
    assert not timed_decoding("auto", requested=False, windows=1)  # a short json/text request: untimed
    assert timed_decoding("auto", requested=False, windows=2)  # long: timed, to decode what it skipped
    assert timed_decoding("auto", requested=True, windows=1)
    assert not timed_decoding("none", requested=False, windows=5)  # wants_timestamps("none", ...) is False
    assert timed_decoding("segments", requested=True, windows=1)
