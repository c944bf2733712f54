"""GET /v1/models, /health (liveness) and /ready (readiness)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .auth import require_api_key
from .routes_audio import MODEL_ALIASES
from .state import ServerState, get_state

router = APIRouter(tags=["models"], dependencies=[Depends(require_api_key)])
probes = APIRouter(tags=["probes"])  # open even when API_KEY is set: kubelet and Prometheus call them
CREATED = int(time.time())


@router.get("/v1/models", summary="The served model and its aliases")
async def models(state: Annotated[ServerState, Depends(get_state)]) -> dict[str, Any]:
    names = [state.settings.model_name, *MODEL_ALIASES]
    return {
        "object": "list",
        "data": [
            {"id": n, "object": "model", "created": CREATED, "owned_by": "kubewhisper", "root": state.settings.model_id}
            for n in names
        ],
    }


@probes.get("/health", summary="Liveness: the process and the engine loop are alive")
async def health(state: Annotated[ServerState, Depends(get_state)]) -> JSONResponse:
    if state.fatal or (state.ready and not state.engine.alive):
        return JSONResponse({"status": "error", "detail": state.fatal or "engine loop died"}, status_code=503)
    p = state.engine.profile
    return JSONResponse(
        {
            "status": "ok",
            "ready": state.ready,
            "model": state.settings.model_name,  # not MODEL_ID: that may be a path inside the image
            "dtype": p.dtype,
            "dtype_reason": p.dtype_reason,
            "kv_cache_dtype": p.kv_cache_dtype,
            "attention_backend": p.attention_backend,
            "device": p.device,
        }
    )


@probes.get("/ready", summary="Readiness: model loaded and warmed up, not draining")
async def ready(state: Annotated[ServerState, Depends(get_state)]) -> JSONResponse:
    if state.ready and not state.draining and state.engine.alive:
        return JSONResponse({"status": "ready", "startup_seconds": state.startup_seconds})
    reason = "draining" if state.draining else state.fatal or "loading"
    return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)


@probes.get("/metrics", summary="Prometheus metrics")
async def metrics(state: Annotated[ServerState, Depends(get_state)]) -> Response:
    state.metrics.queue_depth.set(state.admission.waiting)
    state.metrics.in_flight.set(state.admission.in_flight)
    state.metrics.engine_requests.set(state.engine.pending_requests())
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
