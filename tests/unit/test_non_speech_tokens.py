"""The non-speech symbols the server suppresses are the ones the checkpoints themselves list (suppress_tokens)."""

import json

import pytest

from helpers import VOCAB_EN, VOCAB_MULTILINGUAL
from whisper_inference.engine.vocab import WhisperVocab
from whisper_inference.languages import all_codes

pytestmark = pytest.mark.weights  # reads the converted checkpoints (scripts/models.sh)


@pytest.mark.parametrize("model", ["model_tiny_en", "model_base"])
def test_non_speech_tokens_match_the_checkpoints_suppress_list(model, request):
    from transformers import AutoTokenizer

    path = request.getfixturevalue(model)
    vocab = WhisperVocab.from_tokenizer(AutoTokenizer.from_pretrained(path), all_codes())
    listed = set(json.loads((path / "generation_config.json").read_text())["suppress_tokens"])
    specials = {
        vocab.sot,
        vocab.eot,
        vocab.transcribe,
        vocab.translate,
        vocab.startofprev,
        vocab.nospeech,
        vocab.notimestamps - 1,
        vocab.notimestamps - 2,
        vocab.notimestamps - 3,
    }  # markers, suppressed apart
    assert len(vocab.non_speech) > 80
    assert set(vocab.non_speech) == listed - specials


@pytest.mark.parametrize("model, expected", [("model_tiny_en", VOCAB_EN), ("model_base", VOCAB_MULTILINGUAL)])
def test_the_tests_vocabulary_ids_are_the_checkpoints(model, expected, request):
    """tests/helpers.py's VOCAB_EN / VOCAB_MULTILINGUAL (used by the unit tier) are what the real tokenizers say."""
    from transformers import AutoTokenizer

    real = WhisperVocab.from_tokenizer(AutoTokenizer.from_pretrained(request.getfixturevalue(model)), all_codes())
    fields = ("sot", "eot", "transcribe", "translate", "startofprev", "notimestamps", "nospeech", "timestamp_begin")
    assert {f: getattr(real, f) for f in fields} == {f: getattr(expected, f) for f in fields}
    assert expected.languages.items() <= real.languages.items()
