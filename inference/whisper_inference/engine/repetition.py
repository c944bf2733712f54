"""Is a decode stuck in a loop? Judged by repeated token n-grams, not by how well a whole window compresses.

openai/whisper retries a window whose text compresses more than 2.4x. That catches hallucination loops, but also
speech that really repeats itself: a 30 s window holding 2.7 copies of an 11 s sentence compresses past 2.4, and
every such window was decoded again, hotter, into worse text. A loop is the same short run of tokens back to back
many times ("la la la ...", "Thank you. Thank you. ..."); a repeated sentence is a long run, back to back a few
times at most within 30 s.
"""

from __future__ import annotations

import numpy as np

MIN_LOOP_COPIES = 4  # back-to-back copies of the same token run that make a loop ...
MIN_LOOP_TOKENS = 12  # ... when the copies span at least this many tokens ("no, no, no, no" is speech)


def longest_tandem_repeat(tokens: list[int]) -> tuple[int, int]:
    """(period, copies) of the token run repeated back to back the most times (copies counted whole); (0, 1) if
    nothing repeats."""
    a = np.asarray(tokens, dtype=np.int64)
    best = (0, 1)
    for period in range(1, len(a) // 2 + 1):
        same = np.concatenate([[False], a[period:] == a[:-period], [False]])
        edges = np.flatnonzero(np.diff(same.astype(np.int8)))
        if not len(edges):
            continue
        runs = edges[1::2] - edges[::2]  # lengths of stretches where token i equals token i + period
        copies = int(runs.max()) // period + 1
        if copies > best[1]:
            best = (period, copies)
    return best


def is_loop(text_tokens: list[int]) -> bool:
    """A run of tokens repeated back to back at least MIN_LOOP_COPIES times, spanning MIN_LOOP_TOKENS or more."""
    period, copies = longest_tandem_repeat(text_tokens)
    return copies >= MIN_LOOP_COPIES and period * copies >= MIN_LOOP_TOKENS
