"""Thin kopf handlers: every trigger funnels into Reconciler.reconcile (level-based, idempotent).

Run with ``kopf run --standalone --all-namespaces -m whisper_operator.handlers`` (``make operator``). ``--standalone``
turns kopf's own peering off: one active replica is ensured by a Lease (see leader.py), because kopf peering freezes
replicas of equal priority.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import kopf
from kubernetes import client
from kubernetes import config as kconfig

from . import GROUP, MANAGED_BY, PLURAL, VERSION, webhook
from .config import get_settings
from .leader import AlwaysLeader, LeaseElector
from .manifests import ENDPOINT_LABEL
from .reconcile import Kube, Reconciler, Transient

log = logging.getLogger("whisper_operator")
SETTINGS = get_settings()  # validated at import, i.e. before the operator starts: a bad env stops it here
STATE: dict = {}


def _emit(body: dict, type_: str, reason: str, message: str) -> None:
    try:
        kopf.event(body, type=type_, reason=reason, message=message)
    except Exception as e:  # events are best effort; never fail a reconcile for them
        log.debug("event not posted: %r", e)
    log.info("%s/%s %s %s: %s", body["metadata"].get("namespace"), body["metadata"].get("name"), type_, reason, message)


def _load_kube_config() -> client.ApiClient:
    cfg = client.Configuration()
    try:
        kconfig.load_incluster_config(client_configuration=cfg)
    except kconfig.ConfigException:
        kconfig.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None, client_configuration=cfg)
    return client.ApiClient(cfg)


@kopf.on.login()
def login(**kwargs):
    """In-cluster service account, else $KUBECONFIG read now (not at import time, as the client library does)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_):
    settings.posting.level = logging.WARNING  # only our explicit decisions become Kubernetes Events
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.watching.server_timeout = 300
    api = _load_kube_config()
    kube = Kube(api)
    STATE["kube"] = kube
    STATE["reconciler"] = Reconciler(kube, SETTINGS, _emit)
    if SETTINGS.leader_election:
        identity = SETTINGS.identity or f"{socket.gethostname()}-{os.getpid()}"
        elector = LeaseElector(
            client.CoordinationV1Api(api),
            SETTINGS.lease_name,
            SETTINGS.lease_namespace,
            identity,
            SETTINGS.lease_duration_seconds,
        )
    else:
        elector = AlwaysLeader()
    STATE["elector"] = elector
    await asyncio.to_thread(elector.try_acquire_or_renew)
    STATE["tasks"] = [asyncio.create_task(_elect_loop(elector)), asyncio.create_task(_resync_loop())]
    if SETTINGS.webhook_enabled:
        webhook.configure(settings, SETTINGS)


@kopf.on.cleanup()
async def cleanup(**_):
    for task in STATE.get("tasks", []):
        task.cancel()
    elector = STATE.get("elector")
    if elector is not None:
        await asyncio.to_thread(elector.release)


async def _elect_loop(elector) -> None:
    while True:
        await asyncio.sleep(SETTINGS.lease_duration_seconds / 3)
        await asyncio.to_thread(elector.try_acquire_or_renew)


async def _resync_loop() -> None:
    """The periodic level-based pass (node changes, probe timeouts, drift nobody told us about)."""
    while True:
        await asyncio.sleep(SETTINGS.resync_seconds)
        if not STATE["elector"].is_leader:
            continue
        for item in await asyncio.to_thread(_list_endpoints):
            meta = item["metadata"]
            try:
                await asyncio.to_thread(_reconcile, meta["namespace"], meta["name"])
            except Exception as e:  # the loop must outlive any one endpoint's failure
                log.warning("resync of %s/%s failed: %r", meta["namespace"], meta["name"], e)


def _list_endpoints() -> list[dict]:
    """Every endpoint the operator may see: cluster-wide, or per watched namespace (namespaced RBAC)."""
    custom = STATE["kube"].custom
    scopes = SETTINGS.namespaces or [None]
    items: list[dict] = []
    for ns in scopes:
        try:
            if ns is None:
                items += custom.list_cluster_custom_object(GROUP, VERSION, PLURAL).get("items", [])
            else:
                items += custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL).get("items", [])
        except Exception as e:  # one unreadable namespace must not stop the pass for the others
            log.warning("resync: listing endpoints in %s failed: %r", ns or "all namespaces", e)
    return items


def _reconcile(namespace: str, name: str) -> None:
    if not STATE.get("elector") or not STATE["elector"].is_leader:
        return
    try:
        STATE["reconciler"].reconcile(namespace, name)
    except Transient as e:
        log.info("%s/%s: transient failure, retried on the next trigger: %s", namespace, name, e)


@kopf.on.event(GROUP, VERSION, PLURAL)
def endpoint_event(type, namespace, name, **_):
    if type == "DELETED":
        return  # the children are garbage-collected through their owner references
    _reconcile(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
@kopf.on.event("", "v1", "services", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
def child_event(namespace, labels, **_):
    owner = labels.get(ENDPOINT_LABEL)
    if owner:
        _reconcile(namespace, owner)


@kopf.on.event(
    "", "v1", "pods", labels={"app.kubernetes.io/component": "gpu-probe", "app.kubernetes.io/managed-by": MANAGED_BY}
)
def probe_pod_event(namespace, **_):
    if not STATE.get("elector") or not STATE["elector"].is_leader:
        return
    items = STATE["kube"].custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    for item in items.get("items", []):
        _reconcile(namespace, item["metadata"]["name"])


def validate_endpoint(spec, **_):
    kube = STATE.get("kube")
    nodes = kube.plain(kube.core.list_node()).get("items", []) if kube else []
    problem = webhook.check(dict(spec), nodes, SETTINGS)
    if problem:
        raise kopf.AdmissionError(problem, code=422)


# kopf refuses to start with admission handlers but no admission server: register only when the webhook is on.
if SETTINGS.webhook_enabled:
    kopf.on.validate(GROUP, VERSION, PLURAL, id="validate-endpoint", operations=["CREATE", "UPDATE"])(validate_endpoint)
