import pytest

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
    assert set(body["segments"][0]) == {
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    }


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


def test_temperature_fallback_policy():
    from whisper_inference.transcriber import needs_fallback

    good = "And so my fellow Americans, ask not what your country can do for you."
    assert not needs_fallback(good, [-0.2, -0.3], 0.01)
    assert needs_fallback("thank you " * 50, [-0.1] * 10, 0.01)  # repetition loop
    assert needs_fallback(good, [-1.5, -2.0], 0.01)  # unlikely text
    assert not needs_fallback("thank you " * 50, [-2.0] * 10, 0.9)  # silence: no retry


def test_best_attempt_when_every_temperature_fails():
    from whisper_inference.transcriber import best_attempt

    looping = ("la " * 100, [-0.1] * 5, 0.0)
    unlikely = ("Guten Morgen, wie geht es dir?", [-1.2] * 5, 0.0)
    garbage = ("Editor vice versa seconds dries.", [-2.5] * 5, 1.0)
    assert best_attempt([looping, unlikely, garbage]) is unlikely  # a loop (ratio 20) loses to an unlikely text
    shorter_loop = ("la " * 90, [-0.3] * 5, 0.2)  # ratio 18: 2 points less, 0.2 nats worse
    assert best_attempt([looping, shorter_loop]) is shorter_loop
    weather = "The weather today is sunny and warm with a light breeze from the west."
    repeated = (" ".join([weather] * 3), [-0.1] * 5, 0.0)  # real repetition: ratio 2.86
    assert best_attempt([repeated, garbage]) is repeated  # not the hot gibberish


def test_long_audio_is_decoded_timed_under_auto_whatever_the_format():
    assert not timed_decoding("auto", requested=False, windows=1)  # a short json/text request: untimed
    assert timed_decoding("auto", requested=False, windows=2)  # long: timed, to decode what it skipped
    assert timed_decoding("auto", requested=True, windows=1)
    assert not timed_decoding("none", requested=False, windows=5)  # wants_timestamps("none", ...) is False
    assert timed_decoding("segments", requested=True, windows=1)
