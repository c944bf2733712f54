"""vLLM's own exception classes at the engine boundary, and a failed window cancelling its siblings.

TEST DOUBLES: `FailingLLM` stands in for vLLM's AsyncLLM and `HangingEngine` for WhisperEngine, because an engine
cannot be made to fail one request on demand (the real dead-engine case is tests/engine/test_engine_failures.py).
They raise vLLM's real exception classes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from whisper_inference.config import load_settings
from whisper_inference.engine.vllm_engine import EngineDead, EngineError, WhisperEngine
from whisper_inference.transcriber import all_or_none

pytestmark = pytest.mark.unit


class FailingLLM:
    """Test double for vLLM's AsyncLLM: generate() raises the given vLLM exception."""

    errored = False

    def __init__(self, error: Exception):
        self.error = error

    async def generate(self, *args: object, **kwargs: object):
        raise self.error
        yield  # an async generator, as AsyncLLM.generate is


@pytest.mark.parametrize("kind", ["generate", "dead"])
def test_vllm_errors_become_engine_errors(kind):
    from vllm import SamplingParams
    from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

    engine = WhisperEngine(load_settings(model_id="m"), None)
    engine._engine = FailingLLM(EngineGenerateError() if kind == "generate" else EngineDeadError())  # type: ignore[assignment]
    expected = EngineDead if kind == "dead" else EngineError

    async def run() -> None:
        await engine._run(np.zeros(16000, np.float32), [1, 2], SamplingParams(max_tokens=1))

    with pytest.raises(expected) as exc:
        asyncio.run(run())
    assert (kind == "dead") == isinstance(exc.value, EngineDead)


def test_a_failed_window_cancels_its_siblings():
    cancelled = []

    async def failing() -> None:
        raise EngineError("window 0 failed")

    async def hanging(i: int) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    async def run() -> None:
        await all_or_none([hanging(1), failing(), hanging(2)])

    with pytest.raises(EngineError):
        asyncio.run(run())
    assert sorted(cancelled) == [1, 2]
