"""One active operator: a coordination.k8s.io/v1 Lease, acquired and renewed by the active replica.

Standby replicas keep running (their liveness endpoint answers) but every handler returns at once until they hold the
Lease; the holder renews it every third of its duration and a replica whose renewal fails stops acting immediately.
A renewal that hangs is no better: leadership lapses by itself once the last successful renewal is older than the
renew deadline (two thirds of the duration), so a replica whose API connection hangs stops acting before another
replica can take the expired Lease over; every Lease request also has a timeout of a third of the duration.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _micro(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    def __init__(
        self,
        api: client.CoordinationV1Api,
        name: str,
        namespace: str,
        identity: str,
        duration: float,
        clock: Callable[[], float] = time.monotonic,
        owners: list[dict[str, Any]] | None = None,
    ) -> None:
        self.api, self.name, self.namespace, self.identity = api, name, namespace, identity
        self.owners = owners or []  # written with every create/replace: an older Lease gets them at the next renew
        self.duration = duration
        self.renew_deadline = duration * 2 / 3
        self.clock = clock
        self._leader = threading.Event()
        self._renewed_at = float("-inf")

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set() and self.clock() - self._renewed_at < self.renew_deadline

    def _body(self, transitions: int, acquired: dt.datetime, resource_version: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.owners:
            meta["ownerReferences"] = self.owners
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(max(1, round(self.duration))),
                "acquireTime": _micro(acquired),
                "renewTime": _micro(_now()),
                "leaseTransitions": transitions,
            },
        }

    def try_acquire_or_renew(self) -> bool:
        """One round of the election; returns whether this replica holds the Lease afterwards."""
        started = self.clock()
        timeout = self.duration / 3
        try:
            try:
                lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=timeout)
            except ApiException as e:
                if e.status != 404:
                    raise
                self.api.create_namespaced_lease(
                    self.namespace,
                    self._body(0, _now()),  # type: ignore[arg-type]  # the client takes a plain dict body too
                    _request_timeout=timeout,
                )
                return self._set(True, "acquired a new Lease", started)
            # a Lease without a spec has no holder: it is free to take (the fields are optional in the API)
            spec = lease.spec or client.V1LeaseSpec()
            rv = lease.metadata.resource_version if lease.metadata else None
            transitions = spec.lease_transitions or 0
            if spec.holder_identity == self.identity:
                self.api.replace_namespaced_lease(
                    self.name,
                    self.namespace,
                    self._body(transitions, spec.acquire_time or _now(), rv),  # type: ignore[arg-type]  # dict body
                    _request_timeout=timeout,
                )
                return self._set(True, "renewed", started)
            renew = spec.renew_time or spec.acquire_time
            expired = (
                not spec.holder_identity
                or renew is None
                or (_now() - renew).total_seconds() > (spec.lease_duration_seconds or self.duration)
            )
            if not expired:
                return self._set(False, f"held by {spec.holder_identity}")
            self.api.replace_namespaced_lease(
                self.name,
                self.namespace,
                self._body(transitions + 1, _now(), rv),  # type: ignore[arg-type]  # the client takes a dict body
                _request_timeout=timeout,
            )
            return self._set(True, f"took over an expired Lease from {spec.holder_identity}", started)
        except ApiException as e:
            if e.status == 409:  # someone else wrote the Lease first
                return self._set(False, "lost a race for the Lease")
            log.warning("Lease %s/%s: %s", self.namespace, self.name, e.reason)
            return self._set(False, f"API error {e.status}")
        except Exception as e:  # network errors: stop acting, we cannot prove we hold it
            log.warning("Lease %s/%s: %r", self.namespace, self.name, e)
            return self._set(False, "unreachable API")

    def release(self) -> None:
        if not self.is_leader:
            return
        self._leader.clear()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            spec = lease.spec
            if spec is not None and spec.holder_identity == self.identity:
                body = self._body(
                    spec.lease_transitions or 0,
                    spec.acquire_time or _now(),
                    lease.metadata.resource_version if lease.metadata else None,
                )
                body["spec"]["holderIdentity"] = None
                self.api.replace_namespaced_lease(
                    self.name,
                    self.namespace,
                    body,  # type: ignore[arg-type]  # the client takes a dict body
                )
        except Exception as e:  # best effort: the Lease expires anyway
            log.info("could not release the Lease: %r", e)

    def _set(self, leader: bool, why: str, started: float | None = None) -> bool:
        if leader and started is not None:
            # counted from when the round began: the Lease was written at some point after that
            self._renewed_at = started
        if leader != self.is_leader:
            log.info("leadership %s: %s", "acquired" if leader else "not held", why)
        (self._leader.set if leader else self._leader.clear)()
        return self.is_leader


class AlwaysLeader:
    """Used when leader election is off (a developer's single operator)."""

    is_leader = True

    def try_acquire_or_renew(self) -> bool:
        return True

    def release(self) -> None:
        pass
