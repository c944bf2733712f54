"""What every engine shares about text: its tokenizer and Whisper vocabulary (set by start()), and the conversions
between token ids and text that the transcriber calls, whichever engine decodes."""

from __future__ import annotations

from typing import Any

from .token_logprobs import TokenLogprob, token_logprobs
from .vocab import WhisperVocab


class EngineError(RuntimeError):
    """The engine failed on a request it accepted (not the client's fault)."""


class EngineDead(EngineError):
    """The engine process died: nothing more will be served (the server exits; see api/app.py)."""


class EngineText:
    """Set by an engine's start(); the server calls nothing else before start() has returned."""

    _vocab: WhisperVocab | None = None
    _tokenizer: Any = None

    @property
    def vocab(self) -> WhisperVocab:
        if self._vocab is None:
            raise EngineError("the engine has not started")
        return self._vocab

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            raise EngineError("the engine has not started")
        return self._tokenizer

    def detokenize(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode([t for t in tokens if t < self.vocab.eot]))

    def encode_text(self, text: str) -> list[int]:
        """Token ids of user text. A special token's spelling in it ("<|endoftext|>") is text, never the control
        token (split_special_tokens), so a prompt cannot end the transcript or switch the task."""
        return list(self.tokenizer.encode(" " + text.strip(), add_special_tokens=False, split_special_tokens=True))

    def token_logprobs(self, tokens: list[int], logprobs: list[float]) -> list[TokenLogprob]:
        return token_logprobs(self.tokenizer.convert_ids_to_tokens(tokens), logprobs)
