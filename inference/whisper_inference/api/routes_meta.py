"""GET /v1/models, /health (liveness) and /ready (readiness)."""
from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from .routes_audio import MODEL_ALIASES
from .state import ServerState, get_state

router = APIRouter(tags=["meta"])
CREATED = int(time.time())


@router.get("/v1/models", summary="The served model and its aliases")
async def models(state: Annotated[ServerState, Depends(get_state)]) -> dict:
    names = [state.settings.model_name, *MODEL_ALIASES]
    return {"object": "list",
            "data": [{"id": n, "object": "model", "created": CREATED, "owned_by": "kubewhisper",
                      "root": state.settings.model_id} for n in names]}


@router.get("/health", summary="Liveness: the process and the engine loop are alive")
async def health(state: Annotated[ServerState, Depends(get_state)]) -> JSONResponse:
    if state.fatal or (state.ready and not state.engine.alive):
        return JSONResponse({"status": "error", "detail": state.fatal or "engine loop died"}, status_code=503)
    p = state.engine.profile
    return JSONResponse({"status": "ok", "ready": state.ready, "model": state.settings.model_id,
                         "dtype": p.dtype, "dtype_reason": p.dtype_reason, "kv_cache_dtype": p.kv_cache_dtype,
                         "attention_backend": p.attention_backend, "device": p.device})


@router.get("/ready", summary="Readiness: model loaded and warmed up, not draining")
async def ready(state: Annotated[ServerState, Depends(get_state)]) -> JSONResponse:
    if state.ready and not state.draining and state.engine.alive:
        return JSONResponse({"status": "ready", "startup_seconds": state.startup_seconds})
    reason = "draining" if state.draining else state.fatal or "loading"
    return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
