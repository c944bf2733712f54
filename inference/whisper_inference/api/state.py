"""What the routes share: settings, the engine, and the server's lifecycle flags."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from ..config import Settings
from ..engine.interface import Engine
from ..transcriber import Transcriber
from .limits import AdmissionControl
from .observe import Metrics

log = logging.getLogger(__name__)


@dataclass
class ServerState:
    settings: Settings
    engine: Engine
    transcriber: Transcriber
    admission: AdmissionControl
    metrics: Metrics
    ready: bool = False  # model loaded and a warm-up transcription done
    draining: bool = False  # SIGTERM received: finish in-flight work, accept nothing new
    fatal: str | None = None  # engine failed to start or died
    startup_seconds: float | None = None
    on_fatal: Callable[[], None] | None = None  # how a failed or dead engine stops the process (exit 1)

    def fail(self, reason: str) -> None:
        """The engine cannot serve any more: /health and /ready answer 503 and the process exits non-zero."""
        if self.fatal is None:
            self.fatal = reason
            log.error("fatal: %s", reason)
            if self.on_fatal:
                self.on_fatal()


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state
