from itertools import pairwise

import numpy as np
import pytest

from helpers import VOCAB_EN, VOCAB_MULTILINGUAL
from whisper_inference.audio.windows import split_windows
from whisper_inference.engine.prompts import decoder_prompt
from whisper_inference.engine.segments import split_segments

pytestmark = pytest.mark.unit
ML, EN = VOCAB_MULTILINGUAL, VOCAB_EN  # the real ids of base and tiny.en


def ts(vocab, seconds):
    return vocab.timestamp_begin + int(round(seconds / 0.02))


def test_split_offsets_are_real_starts():
    rate = 16000
    windows = split_windows(np.zeros(int(75.5 * rate), np.float32), rate, 30)
    assert [c.start for c in windows] == [0.0, 30.0, 60.0]
    assert [round(c.duration(rate), 2) for c in windows] == [30.0, 30.0, 15.5]
    assert sum(len(c.samples) for c in windows) == int(75.5 * rate)  # nothing lost


def test_tiny_remainder_folds_into_previous_window():
    rate = 16000
    windows = split_windows(np.zeros(int(20.05 * rate), np.float32), rate, 20)
    assert len(windows) == 1 and len(windows[0].samples) == int(20.05 * rate)


def test_short_audio_is_one_chunk():
    windows = split_windows(np.zeros(800, np.float32), 16000, 30)
    assert len(windows) == 1 and windows[0].start == 0.0


def test_segments_from_timestamp_tokens_are_offset():
    toks = [ts(ML, 0.0), 100, 101, ts(ML, 2.4), ts(ML, 2.4), 102, ts(ML, 5.0), ML.eot]
    segs = split_segments(ML, toks, [-0.1] * len(toks), window_start=30.0, window_duration=30.0, timestamps=True)
    assert [(s.start, s.end, s.tokens) for s in segs] == [(30.0, 32.4, [100, 101]), (32.4, 35.0, [102])]


def test_unclosed_segment_ends_at_chunk_end_and_times_are_clamped():
    toks = [ts(ML, 1.0), 100, ts(ML, 29.9), 101]
    segs = split_segments(ML, toks, None, window_start=60.0, window_duration=12.0, timestamps=True)
    assert [(s.start, s.end) for s in segs] == [(61.0, 72.0), (72.0, 72.0)]
    assert all(a.end <= b.start for a, b in pairwise(segs))


def test_text_without_opening_timestamp_starts_at_previous_end():
    toks = [ts(ML, 0.0), 100, ts(ML, 3.0), 101, ts(ML, 4.0)]
    segs = split_segments(ML, toks, None, 0.0, 30.0, True)
    assert [(s.start, s.end) for s in segs] == [(0.0, 3.0), (3.0, 4.0)]


def test_no_timestamps_gives_one_segment_per_chunk():
    segs = split_segments(ML, [100, 101, ML.eot], [-0.5, -0.25, -0.1], 30.0, 10.0, False)
    assert [(s.start, s.end, s.tokens, s.logprobs) for s in segs] == [(30.0, 40.0, [100, 101], [-0.5, -0.25])]


def test_prompts():
    assert decoder_prompt(ML, language="de", task="transcribe", timestamps=False) == [50258, 50261, 50359, 50363]
    assert decoder_prompt(ML, language="en", task="translate", timestamps=True) == [50258, 50259, 50358, 50364]
    assert decoder_prompt(EN, language=None, task="transcribe", timestamps=False) == [50257, 50362]
    long_prev = list(range(500))
    p = decoder_prompt(EN, language=None, task="transcribe", timestamps=True, previous=long_prev)
    assert p[0] == EN.startofprev and p[1:-2] == long_prev[-223:] and p[-2:] == [EN.sot, EN.timestamp_begin]
    with pytest.raises(ValueError):
        decoder_prompt(ML, language=None, task="transcribe", timestamps=False)


def _speech_with_pause(rate, seconds, pause_at, pause_len=0.4, seed=0):
    rng = np.random.default_rng(seed)
    audio = (0.3 * rng.standard_normal(int(seconds * rate))).astype(np.float32)
    audio[int(pause_at * rate) : int((pause_at + pause_len) * rate)] *= 0.001
    return audio


def test_windows_are_cut_in_the_pause_before_the_boundary():
    rate = 16000
    audio = _speech_with_pause(rate, 70, pause_at=27.8)
    windows = split_windows(audio, rate, 30, search_seconds=3)
    assert 27.8 < windows[1].start < 28.2  # in the pause, not at 30.0 mid-"word"
    assert all(c.duration(rate) <= 30 for c in windows)  # never past Whisper's input
    assert sum(len(c.samples) for c in windows) == len(audio)  # nothing lost, nothing repeated
    assert [c.start for c in windows] == sorted(c.start for c in windows)
    assert np.array_equal(np.concatenate([c.samples for c in windows]), audio)


def test_a_cut_stays_within_the_search_range():
    rate = 16000
    silent = split_windows(np.zeros(int(65 * rate), np.float32), rate, 30, search_seconds=3)
    assert 27.0 <= silent[1].start <= 30.0  # all silence: the middle of it
    noisy = split_windows(_speech_with_pause(rate, 65, pause_at=10), rate, 30, search_seconds=3)
    assert 27.0 <= noisy[1].start <= 30.0


def test_a_pause_between_sentences_beats_a_later_silent_word_gap():
    """Clean (and synthetic) speech has silent gaps between words too; the longest quiet stretch wins."""
    rate = 16000
    audio = _speech_with_pause(rate, 40, pause_at=26.0, pause_len=0.5)
    audio[int(29.5 * rate) : int(29.6 * rate)] = 0.0  # a word gap: shorter, later, even quieter
    windows = split_windows(audio, rate, 30, search_seconds=5)
    assert 26.0 < windows[1].start < 26.5


def test_quiet_and_speech_level():
    from whisper_inference.audio.windows import is_quiet, speech_level

    rate = 16000
    audio = _speech_with_pause(rate, 10, pause_at=4, pause_len=3)
    level = speech_level(audio, rate)
    assert is_quiet(audio[int(4.2 * rate) : int(6.8 * rate)], rate, level)
    assert not is_quiet(audio[int(6.5 * rate) :], rate, level)
    silent = np.zeros(rate, np.float32)
    assert is_quiet(silent, rate, speech_level(silent, rate))  # an all-silent upload has nothing to decode again
