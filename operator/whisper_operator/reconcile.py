"""Level-based reconcile of one WhisperEndpoint: read the world, compute the pure desired state, apply, report.

Called from every trigger (the CR's own events, its children's events, probe pods, the periodic resync), always with
the same outcome for the same world: children are server-side applied (a no-op when nothing differs), and the status
is written only when it changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import GROUP, MANAGED_BY, PLURAL, VERSION, manifests, probe
from .config import OperatorSettings
from .errors import SpecError
from .nodes import candidate_nodes
from .profile import compute_profile
from .status import build_status, changed

log = logging.getLogger(__name__)
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"

# (body, type, reason, message) -> None; kopf.event in the operator, a list in tests
EventSink = Callable[[dict, str, str, str], None]


class Transient(Exception):
    """A failure worth retrying (API unavailable, conflicts that did not resolve)."""


@dataclass
class Kube:
    api: client.ApiClient

    def __post_init__(self):
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def plain(self, obj) -> dict:
        return self.api.sanitize_for_serialization(obj)


@dataclass
class ProbeCache:
    """node name -> (node uid, answer). Answers are {"major", "minor", ...} or {"error": ...}."""

    entries: dict[str, tuple[str, dict]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answers(self, nodes: list[dict]) -> dict[str, dict]:
        uids = {n["metadata"]["name"]: n["metadata"].get("uid") for n in nodes}
        with self.lock:
            return {name: ans for name, (uid, ans) in self.entries.items() if uids.get(name) == uid}

    def put(self, name: str, uid: str, answer: dict) -> None:
        with self.lock:
            self.entries[name] = (uid, answer)


_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def _retry_conflicts(fn, attempts: int = 5):
    for i in range(attempts):
        try:
            return fn()
        except ApiException as e:
            if e.status != 409 or i == attempts - 1:
                raise
            time.sleep(0.2 * (i + 1))


class Reconciler:
    def __init__(self, kube: Kube, settings: OperatorSettings, emit: EventSink, cache: ProbeCache | None = None):
        self.kube, self.settings, self.emit = kube, settings, emit
        self.cache = cache or ProbeCache()

    # ---- reads -------------------------------------------------------------------------------------------------
    def _get_endpoint(self, namespace: str, name: str) -> dict | None:
        try:
            return self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _get(self, read, name: str, namespace: str) -> dict | None:
        try:
            return self.kube.plain(read(name, namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    # ---- probes ------------------------------------------------------------------------------------------------
    def _probe(self, body: dict, node: dict) -> str:
        """'pending' or 'answered' for a node without GPU labels; runs/reads its NVML probe Job."""
        ns = body["metadata"]["namespace"]
        name, uid = node["metadata"]["name"], node["metadata"].get("uid", "")
        job_name = probe.job_name(name)
        job = self._get(self.kube.batch.read_namespaced_job, job_name, ns)
        if job is None:
            manifest = probe.job_manifest(
                name, ns, self.settings.probe_image or self.settings.default_image, body["spec"].get("tolerations")
            )
            try:
                self.kube.batch.create_namespaced_job(ns, manifest)
            except ApiException as e:
                if e.status != 409:
                    raise
            self.emit(
                body,
                "Normal",
                "ProbingGPU",
                f"node {name} has no GPU Feature Discovery labels: running NVML probe Job {job_name}",
            )
            return "pending"
        pods = self.kube.plain(self.kube.core.list_namespaced_pod(ns, label_selector=f"job-name={job_name}")).get(
            "items", []
        )
        answer = probe.read_pods(pods)
        if answer is None:
            failure = probe.job_failed(job)
            started = (job.get("metadata") or {}).get("creationTimestamp")
            age = time.time() - _epoch(started) if started else 0
            if failure is None and age > self.settings.probe_timeout_seconds:
                failure = f"no answer after {int(age)}s"
            if failure is None:
                return "pending"
            answer = {"error": failure}
        self.cache.put(name, uid, answer)
        if "error" in answer:
            self.emit(body, "Warning", "ProbeFailed", f"NVML probe on node {name} failed: {answer['error']}")
        else:
            self.emit(
                body,
                "Normal",
                "ProbedGPU",
                f"node {name}: compute capability "
                f"{answer['major']}.{answer['minor']} ({answer.get('product', 'unknown product')})",
            )
        return "answered"

    # ---- the reconcile -----------------------------------------------------------------------------------------
    def reconcile(self, namespace: str, name: str) -> dict | None:
        """Returns the status written (or that would be), None when the endpoint is gone."""
        with _lock(namespace, name):
            try:
                return self._reconcile(namespace, name)
            except ApiException as e:
                if e.status in (409, 429) or e.status >= 500:
                    raise Transient(f"{e.status} {e.reason}") from e
                raise

    def _reconcile(self, namespace: str, name: str) -> dict | None:
        body = self._get_endpoint(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        spec = body.get("spec") or {}
        nodes = self.kube.plain(self.kube.core.list_node()).get("items", [])
        cands = candidate_nodes(spec, nodes, self.cache.answers(nodes))
        pending: list[str] = []
        if self.settings.probe_enabled:
            by_name = {n["metadata"]["name"]: n for n in nodes}
            for c in cands:
                if c.cc is None and c.name not in self.cache.answers(nodes):
                    if self._probe(body, by_name[c.name]) == "pending":
                        pending.append(c.name)
            cands = candidate_nodes(spec, nodes, self.cache.answers(nodes))

        profile, error = None, None
        if not pending:
            try:
                profile = compute_profile(spec, cands, self.settings.mixed_pool_policy)
            except SpecError as e:
                error = e

        deploy = self._get(self.kube.apps.read_namespaced_deployment, name, namespace)
        svc_port = int((spec.get("service") or {}).get("port") or 80)
        if profile is not None:
            try:
                deploy = self._apply_children(body, profile, deploy)
            except ApiException as e:
                if e.status not in (400, 422):
                    raise
                error = SpecError("InvalidChild", f"the API server refused the Deployment/Service: {_api_message(e)}")
        if error is not None and not _same_error(body, error):
            self.emit(body, "Warning", error.reason, error.message)

        new = build_status(
            body,
            profile=profile if error is None else None,
            error=error,
            probe_pending=pending,
            deploy=deploy,
            url=manifests.service_url(name, namespace, svc_port, self.settings.cluster_domain),
            selector=manifests.selector_string(name),
        )
        old = body.get("status") or {}
        if changed(old, new):
            patch = dict(new)
            if "profile" in old and "profile" not in new:
                patch["profile"] = None
            if (old.get("profile") or {}).get("dtype") != (new.get("profile") or {}).get("dtype") and profile:
                self.emit(
                    body,
                    "Normal",
                    "ProfileChosen",
                    f"compute capability {profile.computeCapability} ({profile.gpuProduct}): dtype "
                    f"{profile.dtype}, KV cache {profile.kvCacheDtype}, attention {profile.attentionBackend}, "
                    f"placement {profile.placement}",
                )
            _retry_conflicts(
                lambda: self.kube.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, PLURAL, name, {"status": patch}, _content_type=MERGE
                )
            )
        return new

    def _apply_children(self, body: dict, profile, deploy: dict | None) -> dict:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        desired = manifests.deployment(body, profile, self.settings)
        before = (deploy or {}).get("metadata", {}).get("resourceVersion")
        applied = self.kube.plain(
            _retry_conflicts(
                lambda: self.kube.apps.patch_namespaced_deployment(
                    name, ns, desired, field_manager=MANAGED_BY, force=True, _content_type=APPLY
                )
            )
        )
        after = applied["metadata"]["resourceVersion"]
        if deploy is None:
            restored = bool((body.get("status") or {}).get("profile"))
            self.emit(
                body,
                "Normal",
                "Restored" if restored else "Created",
                f"{'restored deleted' if restored else 'created'} Deployment {name}",
            )
        elif before != after and _template_differs(deploy, applied):
            self.emit(body, "Normal", "Updated", f"Deployment {name} updated (rolling out the new pod template)")
        svc = self._get(self.kube.core.read_namespaced_service, name, ns)
        _retry_conflicts(
            lambda: self.kube.core.patch_namespaced_service(
                name, ns, manifests.service(body), field_manager=MANAGED_BY, force=True, _content_type=APPLY
            )
        )
        if svc is None:
            self.emit(body, "Normal", "Created", f"created Service {name}")
        return applied


def _template_differs(old: dict, new: dict) -> bool:
    return (old.get("spec") or {}).get("template") != (new.get("spec") or {}).get("template") or (
        old.get("spec") or {}
    ).get("replicas") != (new.get("spec") or {}).get("replicas")


def _same_error(body: dict, error: SpecError) -> bool:
    for c in (body.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Degraded":
            return c.get("status") == "True" and c.get("reason") == error.reason
    return False


def _api_message(e: ApiException) -> str:
    import json

    try:
        return json.loads(e.body).get("message", e.reason)
    except Exception:
        return str(e.reason)


def _epoch(ts) -> float:
    import datetime as dt

    if isinstance(ts, str):
        ts = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return ts.timestamp()
