"""Loops are short token runs repeated back to back; repeated sentences are not loops."""

import pytest

from whisper_inference.engine.repetition import is_loop, longest_tandem_repeat

pytestmark = pytest.mark.unit
JFK = list(range(1000, 1028))  # a 28-token sentence


def test_longest_tandem_repeat():
    assert longest_tandem_repeat([1, 2, 3]) == (0, 1)
    assert longest_tandem_repeat([5, 1, 2, 1, 2, 1, 2, 6]) == (2, 3)
    assert longest_tandem_repeat(JFK * 2 + JFK[:10]) == (28, 2)


@pytest.mark.parametrize(
    "tokens,loops",
    [
        ([9] * 40, True),  # "la la la ..."
        ([7, 8, 11] * 6, True),  # "Thank you. Thank you. ..."
        (JFK * 14 + JFK[:8], True),  # a sentence looped until the token budget ran out
        (JFK, False),
        (JFK * 2 + JFK[:20], False),  # a 30 s window holding 2.7 copies of an 11 s sentence
        (JFK * 3, False),
        ([1, 2] * 4 + JFK, False),  # "no, no, no, no" and then a sentence
        ([], False),
    ],
)
def test_is_loop(tokens, loops):
    assert is_loop(tokens) is loops
