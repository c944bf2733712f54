"""Prometheus metrics (a per-app registry) and one structured log line per request, no content."""

from __future__ import annotations

import json
import logging
import time
import uuid

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("kubewhisper.access")


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "whisper_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "whisper_request_latency_seconds",
            "request latency",
            ["route"],
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
        )
        self.audio_seconds = Counter("whisper_audio_seconds", "seconds of audio transcribed", registry=r)
        self.rtf = Histogram(
            "whisper_real_time_factor",
            "processing seconds per second of audio",
            registry=r,
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
        )
        self.queue_depth = Gauge("whisper_queue_depth", "requests waiting for an engine slot", registry=r)
        self.in_flight = Gauge("whisper_in_flight", "requests in the engine", registry=r)
        self.engine_errors = Counter("whisper_engine_errors", "requests the engine failed", registry=r)
        self.engine_requests = Gauge("whisper_engine_requests", "generation requests inside vLLM", registry=r)
        self.windows_redecoded = Counter(
            "whisper_windows_redecoded", "windows decoded again at a higher temperature (fallback)", registry=r
        )


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began = time.perf_counter()
        request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            latency = time.perf_counter() - began
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(latency)
            audio = scope["state"].get("audio_seconds")
            rtf = None
            if audio and status == 200:
                self.metrics.audio_seconds.inc(audio)
                rtf = latency / audio
                self.metrics.rtf.observe(rtf)
            if route.startswith("/v1/"):
                access_log.info(
                    json.dumps(
                        {
                            "request_id": request_id,
                            "method": scope["method"],
                            "route": route,
                            "status": status,
                            "audio_seconds": round(audio, 3) if audio else None,
                            "latency_s": round(latency, 4),
                            "rtf": round(rtf, 4) if rtf else None,
                        }
                    )
                )
