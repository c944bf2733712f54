"""kopf's own settings for this operator, set once at startup (a pure function of ours, tested without a cluster)."""

from __future__ import annotations

import logging

import kopf

from . import GROUP, MANAGED_BY
from .config import OperatorSettings
from .kube import PAGE

MANAGED = f"app.kubernetes.io/managed-by={MANAGED_BY}"


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    settings.posting.level = logging.WARNING  # kopf's own failures only; decisions are posted by EventRecorder
    settings.persistence.finalizer = f"{GROUP}/operator"  # the resync timer makes kopf add one to each endpoint
    settings.watching.server_timeout = 300
    settings.watching.chunk_size = PAGE  # initial lists are paginated
    settings.networking.request_timeout = ours.request_timeout_seconds
    settings.networking.connect_timeout = ours.request_timeout_seconds
    # filtered by the API server (the handlers' labels= filters only after download): only the children the
    # operator made are listed and watched
    settings.watching.label_selectors["apps", "deployments"] = MANAGED
    settings.watching.label_selectors["", "services"] = MANAGED
