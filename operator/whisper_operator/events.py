"""Kubernetes Events on a WhisperEndpoint, posted with the Kubernetes client (so decisions made by the periodic
resync, outside any kopf handler context, are recorded too) and deduplicated: the same event on the same object is
posted once, and again (as a count bump of the same Event) only after ``repeat_after`` seconds."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import MANAGED_BY

log = logging.getLogger(__name__)
MAX_REMEMBERED = 2048


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_name(body: dict[str, Any], type_: str, reason: str, message: str) -> str:
    """Stable per (object, event): a repeat finds and bumps the Event it posted before, across restarts too."""
    meta = body["metadata"]
    key = f"{meta.get('uid')}|{type_}|{reason}|{message}"
    return f"{meta['name'][:200]}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"


class EventRecorder:
    def __init__(
        self, core: client.CoreV1Api, repeat_after: float = 600.0, clock: Callable[[], float] = time.monotonic
    ):
        self.core, self.repeat_after, self.clock = core, repeat_after, clock
        self._posted: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = body["metadata"]
        log.info("%s/%s %s %s: %s", meta.get("namespace"), meta.get("name"), type_, reason, message)
        name = event_name(body, type_, reason, message)
        with self._lock:
            last = self._posted.get(name)
            if last is not None and self.clock() - last < self.repeat_after:
                return
            self._posted[name] = self.clock()
            self._posted.move_to_end(name)
            while len(self._posted) > MAX_REMEMBERED:
                self._posted.popitem(last=False)
        try:
            self._post(body, name, type_, reason, message)
        except Exception as e:  # events are best effort; a reconcile never fails for one
            log.warning("event %s on %s/%s not posted: %r", reason, meta.get("namespace"), meta.get("name"), e)

    def _post(self, body: dict[str, Any], name: str, type_: str, reason: str, message: str) -> None:
        meta, ns, now = body["metadata"], body["metadata"]["namespace"], _now()
        try:
            old = self.core.read_namespaced_event(name, ns)
        except ApiException as e:
            if e.status != 404:
                raise
            old = None
        if old is not None:
            self.core.patch_namespaced_event(name, ns, {"count": (old.count or 1) + 1, "lastTimestamp": now})
            return
        self.core.create_namespaced_event(
            ns,
            {  # type: ignore[arg-type]  # the client takes a plain dict body, its stubs name only the model
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {
                    "apiVersion": body.get("apiVersion"),
                    "kind": body.get("kind"),
                    "name": meta["name"],
                    "namespace": ns,
                    "uid": meta.get("uid"),
                },
                "type": type_,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": MANAGED_BY},
                "reportingComponent": MANAGED_BY,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
        )
