"""Whisper's special token ids, read from the model's tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

TIMESTAMP_STEP = 0.02  # seconds per timestamp token

# openai/whisper's non-speech symbols (tokenizer.non_speech_tokens), suppressed by its default suppress_tokens="-1":
# without it Whisper writes "[BLANK_AUDIO]", "(music)" or "♪" for what is not speech.
_SYMBOLS = (
    list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
    + "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
)
_MISC = "♩♪♫♬♭♮♯"


def non_speech_tokens(encode: Callable[[str], list[int]]) -> tuple[int, ...]:
    """Token ids of symbols Whisper uses for non-speech annotations, as openai/whisper lists them.

    `encode` turns text into token ids without special tokens. Multi-token symbols count only for the
    musical signs (their first token), as in openai/whisper.
    """
    result = {encode(" -")[0], encode(" '")[0]}
    for symbol in _SYMBOLS + list(_MISC):
        for tokens in (encode(symbol), encode(" " + symbol)):
            if tokens and (len(tokens) == 1 or symbol in _MISC):
                result.add(tokens[0])
    return tuple(sorted(result))


@dataclass(frozen=True)
class WhisperVocab:
    sot: int
    eot: int
    transcribe: int | None
    translate: int | None
    startofprev: int | None
    notimestamps: int
    nospeech: int | None
    languages: dict[str, int]  # 'en' -> id of <|en|>; empty for English-only models
    non_speech: tuple[int, ...] = ()

    @property
    def multilingual(self) -> bool:
        return bool(self.languages)

    @property
    def timestamp_begin(self) -> int:
        return self.notimestamps + 1

    @cached_property
    def language_by_id(self) -> dict[int, str]:
        return {i: code for code, i in self.languages.items()}

    def is_timestamp(self, token: int) -> bool:
        return token >= self.timestamp_begin

    def is_text(self, token: int) -> bool:
        return token < self.eot

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, language_codes: list[str]) -> WhisperVocab:
        """`tokenizer`: a transformers tokenizer of a Whisper checkpoint (transformers is untyped here)."""

        def tid(token: str) -> int | None:
            i = tokenizer.convert_tokens_to_ids(token)
            return None if i is None or i == tokenizer.unk_token_id and token != tokenizer.unk_token else int(i)

        def required(token: str) -> int:
            i = tid(token)
            if i is None:
                raise ValueError(f"not a Whisper tokenizer: it has no {token} token")
            return i

        # English-only vocabularies (51864 tokens) still hold language tokens; they must not be used.
        multilingual = len(tokenizer) >= 51865
        languages = {c: i for c in language_codes if (i := tid(f"<|{c}|>")) is not None} if multilingual else {}
        nospeech = tid("<|nospeech|>") or tid("<|nocaptions|>")
        return cls(
            sot=required("<|startoftranscript|>"),
            eot=required("<|endoftext|>"),
            transcribe=tid("<|transcribe|>"),
            translate=tid("<|translate|>"),
            startofprev=tid("<|startofprev|>"),
            notimestamps=required("<|notimestamps|>"),
            nospeech=nospeech,
            languages=languages,
            non_speech=non_speech_tokens(lambda text: tokenizer.encode(text, add_special_tokens=False)),
        )
