"""Status of a WhisperEndpoint (pure): conditions Ready / Progressing / Degraded / GPUCompatible and counters.

``build_status`` is deterministic given its inputs and the previous status (lastTransitionTime only moves when a
condition's status flips), so the handler can skip the write when nothing changed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .errors import SpecError
from .profile import Profile
from .spec import EndpointSpec


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cond(type_: str, status: bool | None, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": {True: "True", False: "False", None: "Unknown"}[status],
        "reason": reason,
        "message": message,
    }


def rollout(deploy: dict[str, Any] | None, desired: int) -> tuple[bool, str, str]:
    """(in progress?, reason, message) of the Deployment's rollout."""
    if deploy is None:
        return True, "Creating", "creating the Deployment"
    meta, st = deploy.get("metadata") or {}, deploy.get("status") or {}
    if (st.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return True, "RollingOut", "the Deployment controller has not seen the latest spec yet"
    updated, total = st.get("updatedReplicas") or 0, st.get("replicas") or 0
    available = st.get("availableReplicas") or 0
    if updated < desired:
        return True, "RollingOut", f"{updated}/{desired} replicas updated"
    if total > updated:
        return True, "RollingOut", f"{total - updated} old replica(s) terminating"
    if available < desired:
        return True, "RollingOut", f"{available}/{desired} replicas available"
    return False, "RolloutComplete", f"{desired} replica(s) up to date and available"


def deployment_failure(deploy: dict[str, Any] | None) -> tuple[str, str] | None:
    for c in (deploy or {}).get("status", {}).get("conditions") or []:
        if c.get("type") == "ReplicaFailure" and c.get("status") == "True":
            return "ReplicaFailure", c.get("message") or ""
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return "ProgressDeadlineExceeded", c.get("message") or ""
    return None


def build_status(
    body: dict[str, Any],
    spec: EndpointSpec,
    *,
    profile: Profile | None,
    error: SpecError | None,
    probe_pending: list[str] | None,
    deploy: dict[str, Any] | None,
    url: str,
    selector: str,
) -> dict[str, Any]:
    meta = body["metadata"]
    old = body.get("status") or {}
    generation = meta.get("generation") or 0
    desired = spec.replicas
    dst = (deploy or {}).get("status") or {}
    ready = dst.get("readyReplicas") or 0

    if error is not None:
        gpu = _cond("GPUCompatible", False, error.reason, error.message)
        degraded = _cond(
            "Degraded",
            True,
            error.reason,
            error.message
            + (
                " (the existing Deployment keeps its pod template; spec.replicas is still applied)"
                if deploy
                else " (no Deployment created)"
            ),
        )
        progressing = _cond("Progressing", False, "Blocked", "fix the spec: " + error.message)
    elif probe_pending:
        gpu = _cond(
            "GPUCompatible", None, "ProbePending", f"waiting for the NVML probe on node(s) {', '.join(probe_pending)}"
        )
        degraded = _cond("Degraded", False, "AsExpected", "")
        progressing = _cond("Progressing", True, "ProbingGPU", gpu["message"])
    else:
        assert profile is not None
        probing = f"; NVML probe pending on {', '.join(probe_pending)}" if probe_pending else ""
        gpu = (
            _cond("GPUCompatible", True, "NoGPURequested", "gpu.count 0: a CPU endpoint, kept off GPU nodes")
            if profile.on_cpu
            else _cond(
                "GPUCompatible",
                True,
                "ClassDeclared" if profile.placement == "Declared" else "CapabilityResolved",
                f"compute capability {profile.computeCapability} ({profile.gpuProduct}), "
                f"placement {profile.placement}: dtype {profile.dtype}, KV cache {profile.kvCacheDtype}, "
                f"attention {profile.attentionBackend}{probing}",
            )
        )
        failure = deployment_failure(deploy)
        degraded = _cond("Degraded", True, *failure) if failure else _cond("Degraded", False, "AsExpected", "")
        busy, reason, message = rollout(deploy, desired)
        if not profile.nodes and busy and desired > 0:
            # an empty or autoscaled pool: the Pending pods are what asks the autoscaler for a node
            reason = "WaitingForCPUNodes" if profile.on_cpu else "WaitingForGPUNodes"
            kind = (
                "CPU node (without nvidia.com/gpu.present)"
                if profile.on_cpu
                else (f"node of compute capability {profile.computeCapability}")
            )
            message = f"no schedulable {kind} yet: the pods stay Pending until one joins ({message})"
        progressing = _cond("Progressing", busy, reason, message)

    if desired == 0:
        readyc = _cond("Ready", False, "ScaledToZero", "spec.replicas is 0")
    elif deploy is None:
        readyc = _cond("Ready", False, "NoDeployment", "the Deployment does not exist yet")
    elif ready >= desired:
        readyc = _cond("Ready", True, "ReplicasReady", f"{ready}/{desired} replicas ready")
    else:
        readyc = _cond("Ready", False, "ReplicasNotReady", f"{ready}/{desired} replicas ready")

    previous = {c.get("type"): c for c in old.get("conditions") or []}
    conditions = []
    for c in (readyc, progressing, degraded, gpu):
        prev = previous.get(c["type"])
        c["lastTransitionTime"] = (
            prev["lastTransitionTime"]
            if (prev and prev.get("status") == c["status"] and prev.get("lastTransitionTime"))
            else now()
        )
        c["observedGeneration"] = generation
        conditions.append(c)

    status = {
        "observedGeneration": generation,
        "conditions": conditions,
        "replicas": dst.get("replicas") or 0,
        "readyReplicas": ready,
        "selector": selector,
        "url": url,
    }
    if profile is not None:
        status["profile"] = profile.status()
        status["accelerator"] = profile.accelerator
        if profile.sticky is not None:
            status["gpuClass"] = profile.sticky.status()
    elif old.get("profile") and deploy is not None:
        status["profile"] = old["profile"]  # what the running Deployment was built with
        if old.get("accelerator"):
            status["accelerator"] = old["accelerator"]
    if "gpuClass" not in status and old.get("gpuClass") and deploy is not None and profile is None:
        status["gpuClass"] = old["gpuClass"]
    return status


def changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether writing ``new`` would change the stored status (fields the operator owns only)."""
    old = old or {}
    if "profile" in old and "profile" not in new:
        return True
    return any(old.get(k) != v for k, v in new.items()) or (
        "profile" in new and any(k in old and k not in new for k in ("gpuClass", "accelerator"))
    )
