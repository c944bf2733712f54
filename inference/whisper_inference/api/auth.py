"""Bearer API keys on every /v1 route (constant-time comparison); probes and metrics stay open."""

from __future__ import annotations

import hmac

from fastapi import Request

from .errors import APIError


def require_api_key(request: Request) -> None:
    keys: list[str] = request.app.state.server.settings.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip().encode()
    # compare against every key, without stopping early, so timing says nothing about which matched
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(token, key.encode())
    if scheme.lower() != "bearer" or not matched:
        raise APIError(
            401,
            "Incorrect API key provided. Pass it as 'Authorization: Bearer <key>'.",
            None,
            "invalid_api_key",
            {"WWW-Authenticate": "Bearer"},
        )
