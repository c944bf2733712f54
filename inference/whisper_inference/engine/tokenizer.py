"""Whisper's tokenizer read from the model's tokenizer.json with the `tokenizers` library alone.

The CTranslate2 engine uses it instead of transformers' AutoTokenizer, whose import brings torch into the server
process (memory a CTranslate2 server never uses: `make bench-cpu` reports its peak RSS). It offers the methods of a
transformers tokenizer that engine/text.py and engine/vocab.py call, with the same results (tests/unit/
test_tokenizer.py compares them on the real checkpoints).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from tokenizers import Tokenizer

FILE = "tokenizer.json"
# transformers' Whisper decode() drops timestamps ("<|1.20|>") from its text; so does this one
TIMESTAMP = re.compile(r"<\|(\d+\.\d+)\|>")


class WhisperTokenizer:
    def __init__(self, backend: Tokenizer, unk_token: str = "<|endoftext|>"):
        self._backend = backend
        self.unk_token = unk_token  # Whisper's tokenizer_config.json: unk_token is <|endoftext|>
        self.unk_token_id = backend.token_to_id(unk_token)
        self._encoding = threading.Lock()

    @classmethod
    def from_model(cls, model_id: str, *fallbacks: Path) -> WhisperTokenizer:
        """tokenizer.json of the model directory, else of the first fallback directory holding one (the
        CTranslate2 copy beside a converted model), else of the Hugging Face hub repository `model_id`."""
        for directory in (Path(model_id), *fallbacks):
            if (directory / FILE).is_file():
                return cls(Tokenizer.from_file(str(directory / FILE)))
        if Path(model_id).is_dir():
            raise ValueError(f"{model_id} has no {FILE}: the CTranslate2 engine reads Whisper's tokenizer from it")
        return cls(Tokenizer.from_pretrained(model_id))

    def __len__(self) -> int:
        return int(self._backend.get_vocab_size(with_added_tokens=True))

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self._backend.id_to_token(i) or "" for i in ids]

    def encode(self, text: str, add_special_tokens: bool = True, split_special_tokens: bool = False) -> list[int]:
        # encode_special_tokens is the backend's switch for reading "<|endoftext|>" in text as text; it is state
        # of the shared backend, so it is set for each call, under a lock
        with self._encoding:
            self._backend.encode_special_tokens = split_special_tokens
            return list(self._backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return TIMESTAMP.sub("", str(self._backend.decode(ids, skip_special_tokens=skip_special_tokens)))
