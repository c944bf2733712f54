"""engine/tokenizer.py (tokenizers alone, what the CTranslate2 engine uses) gives what transformers' Whisper
tokenizer (the vLLM engine's) gives, through the engine's text conversions, on the real checkpoints."""

from __future__ import annotations

import pytest

from whisper_inference.engine.text import EngineText
from whisper_inference.engine.tokenizer import TIMESTAMP, WhisperTokenizer
from whisper_inference.engine.vocab import WhisperVocab
from whisper_inference.languages import all_codes

pytestmark = pytest.mark.weights  # reads the converted checkpoints (scripts/models.sh)

TEXTS = [
    "And so my fellow Americans, ask not what your country can do for you.",
    " Guten Morgen! Wie geht's? Über Öl — ça va? Ñandú, naïve café.",
    "日本語のテキスト、中文文本，한국어 텍스트. Привет, мир! مرحبا 😀 ♪♪",
    "don't  , . ! ?  it 's (music) [BLANK_AUDIO] -- >>",
    "a prompt that spells <|endoftext|> and <|startoftranscript|><|en|><|0.00|> as text",
    "",
]


def engines(path) -> tuple[EngineText, EngineText]:
    from transformers import AutoTokenizer

    theirs, ours = EngineText(), EngineText()
    theirs._tokenizer = AutoTokenizer.from_pretrained(str(path))
    ours._tokenizer = WhisperTokenizer.from_model(str(path))
    for e in (theirs, ours):
        e._vocab = WhisperVocab.from_tokenizer(e._tokenizer, all_codes())
    return theirs, ours


@pytest.fixture(params=["model_tiny_en", "model_base"])
def pair(request) -> tuple[EngineText, EngineText]:
    return engines(request.getfixturevalue(request.param))


def test_same_vocabulary_and_size(pair):
    theirs, ours = pair
    assert ours.vocab == theirs.vocab
    assert len(ours.tokenizer) == len(theirs.tokenizer)


@pytest.mark.parametrize("text", TEXTS)
def test_same_tokens_text_and_logprob_bytes(pair, text):
    theirs, ours = pair
    v = theirs.vocab
    tokens = ours.encode_text(text)
    assert tokens == theirs.encode_text(text)
    assert v.eot not in tokens and v.sot not in tokens  # a special token's spelling stays text
    # a timed window as the engines return it: timestamps around the text, then <|endoftext|>
    generated = [v.timestamp_begin, *tokens, v.timestamp_begin + 150, v.eot]
    assert ours.detokenize(generated) == theirs.detokenize(generated)
    # byte-level BPE gives the text back exactly, but for spelled timestamps, which transformers' decode drops
    assert ours.detokenize(generated) == " " + TIMESTAMP.sub("", text.strip())
    logprobs = [-0.5] * len(generated)
    assert ours.token_logprobs(generated, logprobs) == theirs.token_logprobs(generated, logprobs)


def test_decode_of_special_and_timestamp_tokens(pair):
    theirs, ours = pair
    v = theirs.vocab
    ids = [v.sot, *v.languages.values(), v.transcribe or v.eot, v.notimestamps, v.timestamp_begin, v.eot]
    ids += list(range(0, v.eot, 97)) + [v.timestamp_begin + i for i in (1, 500, 1500)]
    assert ours.tokenizer.decode(ids) == theirs.tokenizer.decode(ids)
    assert ours.tokenizer.decode(ids, skip_special_tokens=True) == theirs.tokenizer.decode(
        ids, skip_special_tokens=True
    )
    assert ours.tokenizer.convert_ids_to_tokens(ids) == theirs.tokenizer.convert_ids_to_tokens(ids)
