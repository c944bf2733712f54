"""`python -m whisper_inference`: validate the environment, then serve with uvicorn."""

from __future__ import annotations

import logging
import sys
from types import FrameType


def main() -> int:
    from .config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"kubewhisper: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from .api.app import create_app
    from .api.server import uvicorn_config

    class DrainingServer(uvicorn.Server):
        """On SIGTERM/SIGINT: /ready turns 503 and new requests get 503 while in-flight ones finish."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            app.state.server.draining = True
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal after shutdown; a drained server exits 0 instead
            self._captured_signals.clear()

    server: uvicorn.Server | None = None

    def stop() -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_fatal=stop)
    server = DrainingServer(uvicorn_config(app, settings))
    server.run()
    return 1 if app.state.server.fatal else 0


if __name__ == "__main__":
    sys.exit(main())
