"""Level-based reconcile of one WhisperEndpoint: read the world, compute the pure desired state, apply, report.

Called from every trigger (the CR's own events, its children's events, probe pods, the periodic timer), always with
the same outcome for the same world: children are server-side applied (a no-op when nothing differs), and the status
is written only when it changes. Nodes come from the caller (kopf's node index), not from a list per reconcile.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from kubernetes.client.exceptions import ApiException

from . import GROUP, MANAGED_BY, PLURAL, VERSION, manifests, probe
from .config import OperatorSettings
from .cpu_profile import compute_cpu_profile
from .errors import SpecError
from .kube import Kube
from .nodes import candidate_nodes
from .probe_store import ProbeStore
from .profile import Profile, StickyClass, compute_profile
from .spec import EndpointSpec, parse_spec
from .status import build_status, changed

log = logging.getLogger(__name__)
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
T = TypeVar("T")

# (body, type, reason, message) -> None; an EventRecorder in the operator, a list in tests
EventSink = Callable[[dict[str, Any], str, str, str], None]


class Transient(Exception):
    """A failure worth retrying (API unavailable, conflicts that did not resolve, a request that timed out)."""


_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def _retry_conflicts(fn: Callable[[], T], attempts: int = 5) -> T:
    for i in range(attempts):
        try:
            return fn()
        except ApiException as e:
            if e.status != 409 or i == attempts - 1:
                raise
            time.sleep(0.2 * (i + 1))
    raise AssertionError("unreachable")


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        emit: EventSink,
        store: ProbeStore | None = None,
        clock: Callable[[], float] = time.time,
        owners: list[dict[str, Any]] | None = None,
    ) -> None:
        self.kube, self.settings, self.emit, self.clock = kube, settings, emit, clock
        # ownerReferences of what the operator creates in its own namespace (the operator's Deployment, if known)
        self.owners = owners or []
        self.store = store or ProbeStore(kube.core, settings.own_namespace, self.owners)
        self._pdb_version: str | None = None

    # ---- reads -------------------------------------------------------------------------------------------------
    def _get_endpoint(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            # a custom object is a plain JSON object: the client types it only as `object`
            return cast(
                "dict[str, Any]", self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _get(self, read: Callable[[str, str], Any], name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return self.kube.plain(read(name, namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    # ---- probes ------------------------------------------------------------------------------------------------
    def _probe(self, body: dict[str, Any], node: dict[str, Any]) -> bool:
        """Advance the NVML probe of one unlabeled node; True while it is still running."""
        ns = self.settings.own_namespace
        name, uid = node["metadata"]["name"], node["metadata"].get("uid", "")
        job_name = probe.job_name(name, uid)
        job = self._get(self.kube.batch.read_namespaced_job, job_name, ns)
        if job is None:
            image = self.settings.probe_image or self.settings.default_image
            manifest = probe.job_manifest(name, uid, ns, image, int(self.settings.probe_timeout_seconds), self.owners)
            try:
                self.kube.batch.create_namespaced_job(ns, manifest)  # type: ignore[arg-type]  # the client takes a dict
            except ApiException as e:
                if e.status != 409:
                    raise
            self.emit(
                body,
                "Normal",
                "ProbingGPU",
                f"node {name} has no GPU Feature Discovery labels: running NVML probe Job {ns}/{job_name}",
            )
            return True
        pods = self.kube.list_all(self.kube.core.list_namespaced_pod, ns, label_selector=f"job-name={job_name}")
        answer = probe.read_pods(pods)
        if answer is None:
            failure = probe.job_failed(job)
            started = (job.get("metadata") or {}).get("creationTimestamp")
            age = self.clock() - _epoch(started) if started else 0.0
            # activeDeadlineSeconds ends the Job; this backstop covers a Job controller that is behind
            if failure is None and age > 2 * self.settings.probe_timeout_seconds:
                failure = f"no answer after {int(age)}s"
            if failure is None:
                return True
            answer = {"error": failure}
        if "error" in answer:
            answer = probe.failed_answer(
                self.store.answers().get(uid), answer["error"], self.clock(), self.settings.probe_retry_seconds
            )
        self.store.put(uid, name, answer)
        try:  # the answer is stored: the Job and its pod have done their work
            self.kube.batch.delete_namespaced_job(job_name, ns, propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise
        if "error" in answer:
            self.emit(
                body,
                "Warning",
                "ProbeFailed",
                f"NVML probe on node {name} failed (attempt {answer['attempts']}, retried in "
                f"{int(answer['retryAt'] - self.clock())}s): {answer['error']}",
            )
        else:
            self.emit(
                body,
                "Normal",
                "ProbedGPU",
                f"node {name}: compute capability "
                f"{answer['major']}.{answer['minor']} ({answer.get('product', 'unknown product')})",
            )
        return False

    def _probe_unknown(self, body: dict[str, Any], spec: EndpointSpec, nodes: list[dict[str, Any]]) -> list[str]:
        """Probe the candidates whose GPU is unknown (one Job per node, whichever endpoint asks first); the names
        of those still running. The rest of the pool does not wait for them."""
        if not self.settings.probe_enabled:
            return []
        answers = self.store.answers()
        by_uid = {n["metadata"].get("uid", ""): n for n in nodes}
        pending = []
        for c in candidate_nodes(spec, nodes, answers):
            if c.cc is None and probe.due(answers.get(c.uid), self.clock()) and c.uid in by_uid:
                if self._probe(body, by_uid[c.uid]):
                    pending.append(c.name)
        return pending

    # ---- the reconcile -----------------------------------------------------------------------------------------
    def reconcile(self, namespace: str, name: str, nodes: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Returns the status written (or that would be), None when the endpoint is gone. ``nodes``: every node of
        the cluster (the operator's node index)."""
        with _lock(namespace, name):
            try:
                return self._reconcile(namespace, name, nodes)
            except ApiException as e:
                if e.status in (409, 429) or e.status >= 500:
                    raise Transient(f"{e.status} {e.reason}") from e
                raise
            except (TimeoutError, OSError) as e:  # urllib3 timeouts and connection errors are OSErrors
                raise Transient(repr(e)) from e

    def _reconcile(self, namespace: str, name: str, nodes: list[dict[str, Any]]) -> dict[str, Any] | None:
        body = self._get_endpoint(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        deploy = self._get(self.kube.apps.read_namespaced_deployment, name, namespace)
        profile: Profile | None = None
        error: SpecError | None = None
        pending: list[str] = []
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError as e:
            return self._write_invalid(body, e)
        try:
            if spec.on_cpu:  # a CPU endpoint: no GPU class to choose and no node to probe
                profile = compute_cpu_profile(spec, nodes)
            else:
                pending = self._probe_unknown(body, spec, nodes)
                cands = candidate_nodes(spec, nodes, self.store.answers())
                previous = StickyClass.from_status(body.get("status"))
                profile = compute_profile(
                    spec,
                    cands,
                    self.settings.mixed_pool_policy,
                    previous,
                    self.clock(),
                    self.settings.class_reselect_seconds,
                )
        except SpecError as e:
            error = e

        if profile is not None and (error is None):
            try:
                deploy = self._apply_children(body, spec, profile, deploy)
            except ApiException as e:
                if e.status not in (400, 422):
                    raise
                error = SpecError("InvalidChild", f"the API server refused the Deployment/Service: {_api_message(e)}")
        elif deploy is not None:
            # the template stays as it was (nothing safe to change it to), but scaling always works
            deploy = self._scale(deploy, spec.replicas)
        if error is not None and not (pending and error.reason == "NoCandidateNodes"):
            if not _same_error(body, error):
                self.emit(body, "Warning", error.reason, error.message)
        elif error is not None:
            error = None  # nothing to decide yet, but a probe may answer: not Degraded

        new = build_status(
            body,
            spec,
            profile=profile if error is None else None,
            error=error,
            probe_pending=pending,
            deploy=deploy,
            url=manifests.service_url(name, namespace, spec.service.port, self.settings.cluster_domain),
            selector=manifests.selector_string(name),
        )
        self._write_status(body, new, profile if error is None else None)
        return new

    def _write_invalid(self, body: dict[str, Any], error: SpecError) -> dict[str, Any]:
        new = {
            "observedGeneration": body["metadata"].get("generation") or 0,
            "conditions": [
                {"type": "Degraded", "status": "True", "reason": error.reason, "message": error.message},
            ],
        }
        if not _same_error(body, error):
            self.emit(body, "Warning", error.reason, error.message)
        self._write_status(body, new, None)
        return new

    def _write_status(self, body: dict[str, Any], new: dict[str, Any], profile: Profile | None) -> None:
        meta = body["metadata"]
        old = body.get("status") or {}
        if not changed(old, new):
            return
        patch = dict(new)
        if "profile" in old and "profile" not in new:
            patch["profile"] = None
        for key in ("gpuClass", "accelerator"):
            if "profile" in new and key in old and key not in new:  # a GPU endpoint turned CPU has no gpuClass
                patch[key] = None
        # a merge patch keeps what it does not mention: remove a nested field the new status no longer has
        for key in ("gpuClass", "profile"):
            if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
                patch[key] = {**{k: None for k in old[key] if k not in new[key]}, **new[key]}
        if profile and profile.on_cpu and (old.get("profile") or {}).get("placement") != "CPU":
            self.emit(
                body,
                "Normal",
                "ProfileChosen",
                f"CPU endpoint: dtype {profile.dtype}, engine {profile.engine}, on {len(profile.nodes)} CPU node(s)",
            )
        elif profile and (old.get("profile") or {}).get("computeCapability") != profile.computeCapability:
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
                GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], {"status": patch}, _content_type=MERGE
            )
        )

    def _scale(self, deploy: dict[str, Any], replicas: int) -> dict[str, Any]:
        meta = deploy["metadata"]
        if (deploy.get("spec") or {}).get("replicas") == replicas:
            return deploy
        self.kube.apps.patch_namespaced_deployment_scale(
            meta["name"], meta["namespace"], {"spec": {"replicas": replicas}}, _content_type=MERGE
        )
        log.info("%s/%s: scaled to %d with the pod template frozen", meta["namespace"], meta["name"], replicas)
        return self._get(self.kube.apps.read_namespaced_deployment, meta["name"], meta["namespace"]) or deploy

    def _apply_children(
        self, body: dict[str, Any], spec: EndpointSpec, profile: Profile, deploy: dict[str, Any] | None
    ) -> dict[str, Any]:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        desired = manifests.deployment(body, spec, profile, self.settings)
        before = (deploy or {}).get("metadata", {}).get("resourceVersion")
        applied: dict[str, Any] = self.kube.plain(
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
                name, ns, manifests.service(body, spec), field_manager=MANAGED_BY, force=True, _content_type=APPLY
            )
        )
        if svc is None:
            self.emit(body, "Normal", "Created", f"created Service {name}")
        self._apply_pdb(body, spec, deploy)
        return applied

    def _pdb_api_version(self) -> str:
        """policy/v1 where served (Kubernetes >= 1.21), else policy/v1beta1."""
        if self._pdb_version is None:
            groups = self.kube.plain(self.kube.apis.get_api_versions()).get("groups") or []
            versions = [v["version"] for g in groups if g["name"] == "policy" for v in g.get("versions") or []]
            self._pdb_version = "v1" if "v1" in versions else "v1beta1"
        return self._pdb_version

    def _apply_pdb(self, body: dict[str, Any], spec: EndpointSpec, before: dict[str, Any] | None) -> None:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        version = self._pdb_api_version()
        if spec.replicas > 1:
            pdb = manifests.pod_disruption_budget(body, f"policy/{version}")
            _retry_conflicts(
                lambda: self.kube.custom.patch_namespaced_custom_object(
                    "policy",
                    version,
                    ns,
                    "poddisruptionbudgets",
                    name,
                    pdb,
                    field_manager=MANAGED_BY,
                    force=True,
                    _content_type=APPLY,
                )
            )
            return
        if ((before or {}).get("spec") or {}).get("replicas", 0) <= 1:
            return  # no PDB was made for it
        try:  # down to one pod: a PDB would block every node drain
            self.kube.custom.delete_namespaced_custom_object("policy", version, ns, "poddisruptionbudgets", name)
        except ApiException as e:
            if e.status != 404:
                raise


def _template_differs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return (old.get("spec") or {}).get("template") != (new.get("spec") or {}).get("template") or (
        old.get("spec") or {}
    ).get("replicas") != (new.get("spec") or {}).get("replicas")


def _same_error(body: dict[str, Any], error: SpecError) -> bool:
    for c in (body.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Degraded":
            return bool(c.get("status") == "True" and c.get("reason") == error.reason)
    return False


def _api_message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or "").get("message", e.reason))
    except Exception:
        return str(e.reason)


def _epoch(ts: str | dt.datetime) -> float:
    if isinstance(ts, str):
        ts = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return ts.timestamp()
