"""Prompt text is text: special-token spellings are not control tokens, and the prompt is capped before tokenizing.
Needs the converted model's tokenizer (no server)."""

from __future__ import annotations

import pytest

from whisper_inference.config import load_settings
from whisper_inference.engine.vllm_engine import WhisperEngine
from whisper_inference.engine.vocab import WhisperVocab
from whisper_inference.languages import all_codes
from whisper_inference.transcriber import capped_prompt

pytestmark = pytest.mark.engine


def test_special_tokens_in_a_prompt_are_text(model_tiny_en):
    from transformers import AutoTokenizer

    engine = WhisperEngine(load_settings(model_id=str(model_tiny_en)), None)
    engine._tokenizer = AutoTokenizer.from_pretrained(str(model_tiny_en))
    engine._vocab = WhisperVocab.from_tokenizer(engine._tokenizer, all_codes())
    ids = engine.encode_text("hi <|endoftext|><|startoftranscript|><|notimestamps|> there")
    assert all(engine.vocab.is_text(t) for t in ids), ids  # before: 50256 (<|endoftext|>) and friends
    assert "<|endoftext|>" in engine.detokenize(ids)


def test_prompt_is_capped_before_tokenizing():
    assert capped_prompt("x" * 10_000 + "the end", 2000) == ("x" * 10_000 + "the end")[-2000:]
    assert capped_prompt("short", 2000) == "short"
    assert capped_prompt("anything", 0) == ""
