"""Typed errors of the pure layer. Handlers translate them into conditions or kopf retry errors."""

from __future__ import annotations


class SpecError(ValueError):
    """The spec cannot work (on the candidate hardware or at all). Becomes Degraded=True with ``reason``, a code
    (CamelCase, e.g. UnsupportedDtype, NoCandidateNodes) that callers compare instead of the message."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message
