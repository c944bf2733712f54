"""What the operator creates in its own namespace carries an ownerReference to its Deployment (helm uninstall)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from whisper_operator.leader import LeaseElector
from whisper_operator.probe import job_manifest
from whisper_operator.probe_store import ProbeStore

pytestmark = pytest.mark.unit
OWNER = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "kw-operator", "uid": "d-uid"}]


def test_lease_body_carries_the_owner_on_create_and_renew():
    elector = LeaseElector(None, "kw-operator", "kw", "me", 15, owners=OWNER)  # type: ignore[arg-type]
    assert elector._body(0, dt.datetime.now())["metadata"]["ownerReferences"] == OWNER
    bare = LeaseElector(None, "kw-operator", "kw", "me", 15)  # type: ignore[arg-type]
    assert "ownerReferences" not in bare._body(0, dt.datetime.now())["metadata"]


def test_probe_job_carries_the_owner():
    assert job_manifest("n", "u", "kw", "img", 60, OWNER)["metadata"]["ownerReferences"] == OWNER
    assert "ownerReferences" not in job_manifest("n", "u", "kw", "img", 60)["metadata"]


class _Core:
    """The two ConfigMap calls ProbeStore makes, against a dict (the store's create path, not the API server's)."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def read_namespaced_config_map(self, name: str, ns: str) -> Any:
        raise ApiException(status=404)

    def patch_namespaced_config_map(self, name: str, ns: str, body: Any, **_: Any) -> Any:
        if not self.created:
            raise ApiException(status=404)

    def create_namespaced_config_map(self, ns: str, body: dict[str, Any]) -> None:
        self.created.append(body)


def test_probe_configmap_is_created_with_the_owner():
    core = _Core()
    ProbeStore(core, "kw", OWNER).put("uid-1", "node-1", {"major": 8, "minor": 0})  # type: ignore[arg-type]
    assert core.created[0]["metadata"]["ownerReferences"] == OWNER
