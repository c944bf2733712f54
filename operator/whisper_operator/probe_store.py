"""NVML probe answers, keyed by node uid, persisted in one ConfigMap in the operator's namespace.

Only the leader writes it; it reads the ConfigMap once, then keeps its own copy and merges each new answer in, so a
restart (or a new leader) starts from what was already learned instead of probing every node again.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import MANAGED_BY

log = logging.getLogger(__name__)
CONFIGMAP = "kubewhisper-gpu-probes"
MERGE = "application/merge-patch+json"


class ProbeStore:
    def __init__(
        self, core: client.CoreV1Api | None, namespace: str, owners: list[dict[str, Any]] | None = None
    ) -> None:
        self.core, self.namespace, self.owners = core, namespace, owners or []
        self._answers: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def answers(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._answers is None:
                self._answers = self._load()
            return dict(self._answers)

    def _load(self) -> dict[str, dict[str, Any]]:
        if self.core is None:
            return {}
        try:
            cm = self.core.read_namespaced_config_map(CONFIGMAP, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return {}
            raise
        out = {}
        for uid, text in (cm.data or {}).items():
            try:
                answer = json.loads(text)
            except ValueError:
                continue  # a hand-edited entry is probed again rather than trusted
            if isinstance(answer, dict):
                out[uid] = answer
        return out

    def put(self, uid: str, node: str, answer: dict[str, Any]) -> None:
        entry = {**answer, "node": node}
        self.answers()  # loaded before the first write
        with self._lock:
            assert self._answers is not None
            self._answers[uid] = entry
        if self.core is None:
            return
        patch = {"data": {uid: json.dumps(entry, sort_keys=True)}}
        try:
            self.core.patch_namespaced_config_map(CONFIGMAP, self.namespace, patch, _content_type=MERGE)
        except ApiException as e:
            if e.status != 404:
                raise
            body = {
                "metadata": {
                    "name": CONFIGMAP,
                    "namespace": self.namespace,
                    "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
                    **({"ownerReferences": self.owners} if self.owners else {}),
                },
                **patch,
            }
            try:
                self.core.create_namespaced_config_map(self.namespace, body)  # type: ignore[arg-type]  # a dict is fine
            except ApiException as e2:
                if e2.status != 409:
                    raise
                self.core.patch_namespaced_config_map(CONFIGMAP, self.namespace, patch, _content_type=MERGE)
