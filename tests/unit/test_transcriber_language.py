"""Language policy: LANGUAGE_FORCE over the request over detection; English-only models refuse others.

The engine here is a stand-in that records whether detection ran: the policy is pure logic, and the
real detection is exercised against vLLM in tests/engine.
"""

import asyncio

import numpy as np
import pytest

from helpers import VOCAB_EN, VOCAB_MULTILINGUAL
from whisper_inference.audio.windows import Window
from whisper_inference.config import load_settings
from whisper_inference.transcriber import Transcriber, TranscriptionJob, UnsupportedLanguage

pytestmark = pytest.mark.unit
ML, EN = VOCAB_MULTILINGUAL, VOCAB_EN  # the real ids of base and tiny.en


class StandInEngine:
    def __init__(self, vocab):
        self.vocab, self.detected = vocab, 0

    async def detect_language(self, samples):
        self.detected += 1
        return "de", 0.9


def language(vocab, job_language, force=None):
    env = {"MODEL_ID": "m"} | ({"LANGUAGE_FORCE": force} if force else {})
    engine = StandInEngine(vocab)
    t = Transcriber(engine, load_settings(**{k.lower(): v for k, v in env.items()}))
    window = Window(0.0, np.zeros(16000, np.float32))
    return asyncio.run(t.language_for(TranscriptionJob(b"", language=job_language), window)), engine.detected


def test_detects_when_not_given():
    assert language(ML, None) == ("de", 1)


def test_request_language_skips_detection():
    assert language(ML, "en") == ("en", 0)


def test_language_force_overrides_request():
    assert language(ML, "en", force="de") == ("de", 0)


def test_english_only():
    assert language(EN, None) == ("en", 0)
    with pytest.raises(UnsupportedLanguage) as exc:
        language(EN, "de")
    assert exc.value.param == "language"
