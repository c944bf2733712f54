"""create_app(): the FastAPI application, its engine injected or built from settings."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI

from ..config import Settings
from ..engine.interface import Engine
from ..engine.prompts import decoder_prompt
from ..engine.select import build_engine
from ..gpu import GpuInfo, detect_gpu
from ..transcriber import Transcriber
from . import routes_audio, routes_meta
from .auth import ApiKeyMiddleware
from .errors import install_error_handlers
from .limits import AdmissionControl, BodyDeadlineMiddleware, UploadLimitMiddleware
from .observe import Metrics, ObserveMiddleware
from .state import ServerState

log = logging.getLogger(__name__)


WARM_UP_RATE = 44100  # not the model's rate: the warm-up goes through the decode worker and the resampler


def warm_up_upload() -> bytes:
    """One second of a quiet tone as a 44.1 kHz WAV file."""
    import io

    import soundfile as sf

    t = np.arange(WARM_UP_RATE) / WARM_UP_RATE
    buf = io.BytesIO()
    sf.write(buf, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), WARM_UP_RATE, format="WAV")
    return buf.getvalue()


async def warm_up(engine: Engine, transcriber: Transcriber) -> None:
    """Decode, resample and generate once, so the first user request does not pay for lazy initialisation
    (the decode workers' forkserver, the resampler, the engine)."""
    # the first decode also starts the forkserver: not held to the per-upload deadline
    samples = await transcriber.audio.decode(warm_up_upload(), timeout=max(60.0, transcriber.audio.timeout))
    language = "en" if engine.vocab.multilingual else None
    await engine.generate(
        samples, decoder_prompt(engine.vocab, language=language, task="transcribe", timestamps=False), 0.0, max_tokens=4
    )


async def start_engine(state: ServerState) -> None:
    began = time.monotonic()
    try:
        await state.engine.start()
        await warm_up(state.engine, state.transcriber)
    except Exception as exc:  # any start-up failure: report it through /health and the log, then exit
        log.exception("engine failed to start")
        state.fail(f"engine failed to start: {type(exc).__name__}: {exc}")
        return
    state.startup_seconds = round(time.monotonic() - began, 1)
    state.ready = True
    log.info(
        "ready in %.1f s (%s, %s)",
        state.startup_seconds,
        state.engine.profile.device,
        state.engine.profile.dtype_reason,
    )


async def watch_engine(state: ServerState, every_seconds: float = 1.0) -> None:
    """A started engine that dies (its process killed, out of memory) fails the server even with no request in
    flight to notice it: /health turns 503 and the process exits 1, so Kubernetes restarts the pod."""
    while state.fatal is None:
        await asyncio.sleep(every_seconds)
        if state.ready and not state.engine.alive:
            state.fail("the engine died")


def create_app(
    settings: Settings,
    engine: Engine | None = None,
    gpu_detector: Callable[[], GpuInfo | None] = detect_gpu,
    on_fatal: Callable[[], None] | None = None,
) -> FastAPI:
    engine = engine or build_engine(settings, gpu_detector)
    metrics = Metrics()
    state = ServerState(
        settings=settings,
        engine=engine,
        transcriber=Transcriber(engine, settings, on_redecode=metrics.windows_redecoded.inc),
        admission=AdmissionControl(settings.max_concurrent_requests, settings.max_queue),
        metrics=metrics,
        on_fatal=on_fatal,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        starter = asyncio.create_task(start_engine(state))  # /health answers while the model loads
        watchdog = asyncio.create_task(watch_engine(state))
        try:
            yield
        finally:
            state.draining = True
            starter.cancel()
            watchdog.cancel()
            engine.shutdown()

    app = FastAPI(
        title="kubewhisper",
        version="0.1.0",
        lifespan=lifespan,
        description="OpenAI-compatible speech-to-text (Whisper on vLLM)",
    )
    app.state.server = state
    install_error_handlers(app)
    app.include_router(routes_audio.router)
    app.include_router(routes_meta.router)
    app.include_router(routes_meta.probes)
    app.add_middleware(UploadLimitMiddleware, max_bytes=int(settings.max_upload_mb * 2**20))
    app.add_middleware(BodyDeadlineMiddleware, seconds=settings.body_timeout_seconds)
    app.add_middleware(ApiKeyMiddleware, settings=settings)  # before any body is read
    app.add_middleware(ObserveMiddleware, metrics=metrics)  # outermost: sees every status, 401s and 413s too
    return app
