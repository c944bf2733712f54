"""Word timestamps, pure parts: DTW, token boundaries, words from tokens, punctuation, edges, offsets, cues."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_inference.engine.alignment import alignment_heads, dtw, token_boundaries
from whisper_inference.engine.token_logprobs import token_bytes, token_logprobs
from whisper_inference.engine.words import (
    Word,
    merge_punctuation,
    ordered,
    refine_edges,
    sound_runs,
    split_words,
    timed_words,
)
from whisper_inference.formats.cues import word_cues

pytestmark = pytest.mark.unit

# a toy tokenizer: each token id is one piece of text
PIECES = {1: " Hello", 2: ",", 3: " wor", 4: "ld", 5: ".", 6: ' "', 7: "Hi", 8: '"', 9: " (", 10: "x", 11: ")"}


def decode(ids):
    return "".join(PIECES[i] for i in ids)


def test_dtw_follows_a_diagonal():
    cost = np.ones((3, 6))
    for i, cols in enumerate([(0, 1), (2, 3), (4, 5)]):
        cost[i, list(cols)] = 0.0
    rows, frames = dtw(cost)
    assert rows[0] == 0 and frames[0] == 0 and rows[-1] == 2 and frames[-1] == 5
    assert all(np.diff(rows) >= 0) and all(np.diff(frames) >= 0)
    assert {int(f) for r, f in zip(rows, frames, strict=True) if r == 1} == {2, 3}


def test_token_boundaries_from_attention():
    # two heads attend token k to frames 10k..10k+9 (20 ms each): token k starts at 0.2*k s
    weights = np.full((2, 4, 40), 1e-3)
    for k in range(4):
        weights[:, k, 10 * k : 10 * k + 10] = 1.0
    b = token_boundaries(weights)
    assert len(b) == 5
    assert np.allclose(b[:4], [0.0, 0.2, 0.4, 0.6], atol=0.05)


def test_alignment_heads_from_config_and_fallback(tmp_path):
    (tmp_path / "generation_config.json").write_text('{"alignment_heads": [[2, 1], [3, 0], [9, 9]]}')
    heads, source = alignment_heads(tmp_path, layers=4, heads=6)
    assert heads == [(2, 1), (3, 0)] and "generation_config" in source
    heads, source = alignment_heads(tmp_path / "none", layers=4, heads=2)
    assert heads == [(2, 0), (2, 1), (3, 0), (3, 1)] and "fallback" in source


def test_split_words_at_spaces_and_punctuation():
    words = split_words([1, 2, 3, 4, 5], decode, "en")
    assert [(w.text, w.first, w.count) for w in words] == [(" Hello", 0, 1), (",", 1, 1), (" world", 2, 2), (".", 4, 1)]


def test_punctuation_attached_as_openai_whisper_does():
    w = [Word(" Hello", 0, 1), Word(",", 1, 1.1), Word(' "', 1.2, 1.3), Word("Hi", 1.3, 2), Word('"', 2, 2.1)]
    merged = merge_punctuation(w)
    assert [x.word for x in merged] == [" Hello,", ' "Hi"']
    assert (merged[0].start, merged[0].end) == (0, 1)  # the word keeps its own times


def test_words_offset_by_window_start_and_clamped():
    words = timed_words(split_words([1, 3, 4], decode, "en"), np.array([0.0, 0.5, 0.7, 1.2]), offset=30.0, limit=31.0)
    assert [(w.word, w.start, w.end) for w in words] == [(" Hello", 30.0, 30.5), (" world", 30.5, 31.0)]


def test_refine_moves_edges_out_of_silence():
    rate = 16000
    samples = np.zeros(3 * rate, np.float32)
    t = np.arange(int(0.4 * rate)) / rate
    samples[int(1.0 * rate) : int(1.4 * rate)] = 0.5 * np.sin(2 * np.pi * 220 * t)  # the word: 1.0-1.4 s
    samples[int(0.3 * rate) : int(0.5 * rate)] = 0.5 * np.sin(2 * np.pi * 220 * t[: int(0.2 * rate)])  # previous
    word = Word("x", 10.45, 12.2)  # DTW: starts in the previous word's tail, ends deep in the silence after
    refine_edges([word], sound_runs(samples, rate), offset=10.0)
    assert abs(word.start - 11.0) <= 0.03 and abs(word.end - 11.4) <= 0.03


def test_ordered_words_never_overlap():
    out = ordered([Word("b", 1.0, 2.0), Word("a", 0.0, 1.5)])
    assert [w.word for w in out] == ["a", "b"] and out[1].start >= out[0].end


def test_word_cues_break_at_sentence_end_and_size():
    words = [Word("One", 0, 1), Word("two.", 1, 2), Word("Three", 2, 3), Word("four", 3, 4), Word("five", 4, 5)]
    assert word_cues(words, 2) == [(0, 2, "One two."), (2, 4, "Three four"), (4, 5, "five")]
    assert len(word_cues(words, 1)) == 5


def test_token_bytes_are_exact_for_split_characters():
    assert token_bytes("Ġhello") == b" hello"
    # "é" is two bytes; byte-level BPE writes them as two characters ("Ã" and "©")
    lps = token_logprobs(["Ã", "©"], [-0.1, -0.2])
    assert bytes(lps[0].bytes + lps[1].bytes).decode() == "é"
    assert lps[0].token == "\ufffd" and lps[0].logprob == -0.1
