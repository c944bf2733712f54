"""Subtitle cues: one per segment, or (with word timestamps) runs of at most N words (pure functions)."""

from __future__ import annotations

from ..engine.words import SENTENCE_END, Word


def word_cues(words: list[Word], max_words: int) -> list[tuple[float, float, str]]:
    """(start, end, text) cues of at most `max_words` consecutive words; a cue also ends after a sentence's last
    word, so a subtitle never runs across sentences."""
    cues: list[tuple[float, float, str]] = []
    run: list[Word] = []
    for w in words:
        run.append(w)
        if len(run) >= max_words or w.word[-1:] in SENTENCE_END:
            cues.append((run[0].start, run[-1].end, " ".join(x.word for x in run)))
            run = []
    if run:
        cues.append((run[0].start, run[-1].end, " ".join(x.word for x in run)))
    return cues
