"""Bearer API keys (constant-time comparison), checked from the headers before any body is read.

Keys come from API_KEY and API_KEY_FILE, the file read again on every request so a rotated Secret takes effect.
A key file that yields no key fails closed: refused at start-up (config.py), 503 at run time, never "no auth".
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from .errors import APIError, error_body

# With keys set, these need one too: the API and its description. Probes and metrics stay open for the kubelet
# and Prometheus.
GUARDED_PREFIXES = ("/v1/", "/docs", "/redoc", "/openapi.json")


class KeysUnavailable(Exception):
    """API_KEY_FILE is set but yields no key (missing, unreadable or empty)."""


def current_keys(settings: Settings) -> list[str]:
    """The accepted keys; empty means authentication is off (neither API_KEY nor API_KEY_FILE is set)."""
    keys = [k.strip() for k in (settings.api_key or "").split(",") if k.strip()]
    if settings.api_key_file:
        try:
            from_file = [k.strip() for k in Path(settings.api_key_file).read_text().splitlines() if k.strip()]
        except (OSError, UnicodeDecodeError):
            from_file = []
        if not from_file:
            raise KeysUnavailable(f"API_KEY_FILE {settings.api_key_file} holds no key")
        keys += from_file
    return keys


def check_authorization(settings: Settings, authorization: str) -> APIError | None:
    """None when the request may proceed; else the error to answer."""
    try:
        keys = current_keys(settings)
    except KeysUnavailable:
        return APIError(
            503, "authentication is not available (the API key file holds no key)", None, "auth_unavailable"
        )
    if not keys:
        return None
    scheme, _, token = authorization.partition(" ")
    given = token.strip().encode()
    # compare against every key, without stopping early, so timing says nothing about which matched
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())
    if scheme.lower() != "bearer" or not matched:
        return APIError(
            401,
            "Incorrect API key provided. Pass it as 'Authorization: Bearer <key>'.",
            None,
            "invalid_api_key",
            {"WWW-Authenticate": "Bearer"},
        )
    return None


def require_api_key(request: Request) -> None:
    """The routes' dependency (the middleware below has already answered by the time it runs)."""
    error = check_authorization(request.app.state.server.settings, request.headers.get("authorization", ""))
    if error is not None:
        raise error


def _label_route(scope: Scope) -> None:
    """Record the route this request was for, as routing would have (metrics count 401s by route)."""
    from starlette.routing import Match

    for route in getattr(scope.get("app"), "routes", []):
        if route.matches(scope)[0] == Match.FULL:
            scope["route"] = route
            return


class ApiKeyMiddleware:
    """401/503 for a guarded path from the headers alone: the multipart body is never read for such a request."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(GUARDED_PREFIXES):
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            error = check_authorization(self.settings, header)
            if error is not None:
                _label_route(scope)
                body = json.dumps(error_body(error.status, error.message, error.param, error.code)).encode()
                headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
                headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
                await send({"type": "http.response.start", "status": error.status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
