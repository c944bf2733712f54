"""Thin kopf handlers: every trigger funnels into Reconciler.reconcile (level-based, idempotent).

Run with ``kopf run --standalone --all-namespaces -m whisper_operator.handlers`` (``make operator``). ``--standalone``
turns kopf's own peering off: one active replica is ensured by a Lease (see leader.py), because kopf peering freezes
replicas of equal priority.

kopf idioms: the settings, client, event recorder, elector and reconciler are made at startup and kept in ``memo``;
nodes are a kopf index (one watch, no list per reconcile); the periodic level-based pass is a timer per endpoint;
a transient API failure in it is a ``kopf.TemporaryError`` retried after a delay.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client

from . import GROUP, MANAGED_BY, PLURAL, VERSION, webhook
from .config import get_settings
from .events import EventRecorder
from .kopf_config import configure_kopf
from .kube import Kube, load_api_client
from .leader import AlwaysLeader, LeaseElector
from .manifests import ENDPOINT_LABEL
from .reconcile import Reconciler, Transient

log = logging.getLogger("whisper_operator")
SETTINGS = get_settings()  # validated at import, i.e. before the operator starts: a bad env stops it here


@kopf.on.login()
def login(**kwargs: Any) -> Any:
    """In-cluster service account, else $KUBECONFIG read now (not at import time, as the client library does)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_kopf(settings, SETTINGS)
    api = load_api_client(SETTINGS.request_timeout_seconds)
    kube = Kube(api)
    memo.kube = kube
    memo.events = EventRecorder(kube.core)
    owners = await asyncio.to_thread(_owner_references, kube)
    same_ns = SETTINGS.own_namespace == SETTINGS.lease_namespace
    memo.reconciler = Reconciler(kube, SETTINGS, memo.events, owners=owners if same_ns else None)
    if SETTINGS.leader_election:
        identity = SETTINGS.identity or f"{socket.gethostname()}-{os.getpid()}"
        memo.elector = LeaseElector(
            client.CoordinationV1Api(api),
            SETTINGS.lease_name,
            SETTINGS.lease_namespace,
            identity,
            SETTINGS.lease_duration_seconds,
            owners=owners,
        )
    else:
        memo.elector = AlwaysLeader()
    await asyncio.to_thread(memo.elector.try_acquire_or_renew)
    memo.tasks = [asyncio.create_task(_elect_loop(memo.elector))]
    if SETTINGS.webhook_enabled:
        webhook.configure(settings, SETTINGS)


def _owner_references(kube: Kube) -> list[dict[str, Any]]:
    """An ownerReference to the operator's own Deployment (KUBEWHISPER_OWNER_DEPLOYMENT), so that the Lease, the probe
    ConfigMap and probe Jobs go with it (helm uninstall leaves nothing). Unreadable: none, and the operator runs on."""
    name = SETTINGS.owner_deployment
    if not name:
        return []
    try:
        deploy = kube.apps.read_namespaced_deployment(name, SETTINGS.lease_namespace)
    except Exception as e:  # the owner is a tidiness, never a reason not to run
        log.warning("owner Deployment %s/%s unreadable, creating without owner: %r", SETTINGS.lease_namespace, name, e)
        return []
    uid = deploy.metadata.uid if deploy.metadata else None
    return [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid}] if uid else []


@kopf.on.probe(id="leader")
def leader_probe(memo: kopf.Memo, **_: Any) -> bool:
    """In kopf's /healthz answer: whether this replica holds the Lease (the chart's `helm test` checks it)."""
    elector = memo.get("elector")
    return bool(elector is not None and elector.is_leader)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("tasks", []):
        task.cancel()
    elector = memo.get("elector")
    if elector is not None:
        await asyncio.to_thread(elector.release)


async def _elect_loop(elector: LeaseElector | AlwaysLeader) -> None:
    while True:
        await asyncio.sleep(SETTINGS.lease_duration_seconds / 3)
        await asyncio.to_thread(elector.try_acquire_or_renew)


def _slim_node(body: kopf.Body) -> dict[str, Any]:
    """What candidate selection reads of a node, and no more (the index holds every node of the cluster)."""
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
    return {
        "metadata": {"name": meta.get("name"), "uid": meta.get("uid"), "labels": dict(meta.get("labels") or {})},
        "spec": {"unschedulable": spec.get("unschedulable"), "taints": list(spec.get("taints") or [])},
        "status": {
            "allocatable": dict(status.get("allocatable") or {}),
            "capacity": dict(status.get("capacity") or {}),
        },
    }


@kopf.index("", "v1", "nodes")
def node_index(name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    return {name: _slim_node(body)}


def _nodes(index: kopf.Index[str, dict[str, Any]]) -> list[dict[str, Any]]:
    # a snapshot taken in the event loop: the reconcile runs in a thread while kopf keeps updating the index
    return [node for store in index.values() for node in store]


def _node_index(kwargs: dict[str, Any]) -> kopf.Index[str, dict[str, Any]]:
    # kopf passes every index to every handler as a keyword named after it; its callback protocols cannot name it
    index: kopf.Index[str, dict[str, Any]] = kwargs["node_index"]
    return index


async def _reconcile(memo: kopf.Memo, index: kopf.Index[str, dict[str, Any]], namespace: str | None, name: str) -> None:
    # kopf's None is for cluster-scoped objects; every resource watched here is namespaced
    if namespace is None or not memo.elector.is_leader:
        return
    nodes = _nodes(index)
    await asyncio.to_thread(memo.reconciler.reconcile, namespace, name, nodes)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def endpoint_event(type: str | None, namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    if type == "DELETED":
        return  # the children are garbage-collected through their owner references
    try:
        await _reconcile(memo, _node_index(kwargs), namespace, name)
    except Transient as e:  # event handlers are not retried: the timer is
        log.info("%s/%s: transient failure, retried by the resync timer: %s", namespace, name, e)


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.resync_seconds, sharp=False)
async def resync(namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    """The periodic level-based pass (node changes, probe answers, drift nobody told us about)."""
    try:
        await _reconcile(memo, _node_index(kwargs), namespace, name)
    except Transient as e:
        raise kopf.TemporaryError(f"transient API failure: {e}", delay=min(30.0, SETTINGS.resync_seconds)) from e


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
@kopf.on.event("", "v1", "services", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
async def child_event(namespace: str | None, labels: Mapping[str, str], memo: kopf.Memo, **kwargs: Any) -> None:
    owner = labels.get(ENDPOINT_LABEL)
    if owner:
        try:
            await _reconcile(memo, _node_index(kwargs), namespace, owner)
        except Transient as e:
            log.info("%s/%s: transient failure, retried by the resync timer: %s", namespace, owner, e)


def validate_endpoint(spec: kopf.Spec, **kwargs: Any) -> None:
    # `operation` and `old` are passed by kopf's admission server but not named by its WebhookFn protocol
    old = kwargs.get("old")
    if kwargs.get("operation") == "UPDATE" and old is not None and dict(old.get("spec") or {}) == dict(spec):
        return  # metadata-only updates (finalizers, labels, foreground deletion) are never refused
    problem = webhook.check(dict(spec), _nodes(_node_index(kwargs)), SETTINGS)
    if problem:
        raise kopf.AdmissionError(problem, code=422)


# kopf refuses to start with admission handlers but no admission server: register only when the webhook is on.
if SETTINGS.webhook_enabled:
    kopf.on.validate(GROUP, VERSION, PLURAL, id="validate-endpoint", operations=["CREATE", "UPDATE"])(validate_endpoint)
