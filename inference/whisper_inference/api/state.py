"""What the routes share: settings, the engine, and the server's lifecycle flags."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from ..config import Settings
from ..engine.vllm_engine import WhisperEngine
from ..transcriber import Transcriber
from .limits import AdmissionControl
from .observe import Metrics


@dataclass
class ServerState:
    settings: Settings
    engine: WhisperEngine
    transcriber: Transcriber
    admission: AdmissionControl
    metrics: Metrics
    ready: bool = False  # model loaded and a warm-up transcription done
    draining: bool = False  # SIGTERM received: finish in-flight work, accept nothing new
    fatal: str | None = None  # engine failed to start or died
    startup_seconds: float | None = None
    on_fatal: Callable[[], None] | None = None  # how a failed engine start stops the process


def get_state(request: Request) -> ServerState:
    return request.app.state.server
