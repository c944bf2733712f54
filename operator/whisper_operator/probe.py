"""NVML probe (for GPU nodes with neither GFD compute labels nor a known product label).

A short Job in the operator's own namespace runs ``python -m whisper_inference.gpu_probe`` (the inference image, or
``KUBEWHISPER_PROBE_IMAGE``) on the node, requesting one GPU; it writes ``{"major": 9, "minor": 0, "product": "...",
"memoryMiB": 81559}`` (or ``{"error": "..."}``) to /dev/termination-log, which the kubelet copies into the pod's
``status.containerStatuses[0].state.terminated.message``. Answers are keyed by node uid (a replaced node of the same
name is probed again) and persisted in a ConfigMap (probe_store.py); the finished Job is deleted. A failure is
retried with exponential backoff, never recorded for good.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from . import GROUP, MANAGED_BY
from .nodes import GPU_RESOURCE

INFERENCE_UID = 10001  # the numeric non-root user Dockerfile.inference runs as

PROBE_LABEL = f"{GROUP}/gpu-probe-node"


MAX_RETRY_SECONDS = 3600.0


def job_name(node: str, uid: str = "") -> str:
    digest = hashlib.sha256(f"{node}/{uid}".encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]+", "-", node.lower()).strip("-")[:30].strip("-")
    return f"kubewhisper-gpu-probe-{stem}-{digest}"


def job_manifest(
    node: str, uid: str, namespace: str, image: str, deadline_seconds: int, owners: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    labels = {
        PROBE_LABEL: node[:63],
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/component": "gpu-probe",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(node, uid),
            "namespace": namespace,
            "labels": labels,
            "annotations": {f"{GROUP}/node": node, f"{GROUP}/node-uid": uid},
            **({"ownerReferences": owners} if owners else {}),
        },
        "spec": {
            "backoffLimit": 0,  # the operator retries, with backoff, and deletes the Job
            "activeDeadlineSeconds": deadline_seconds,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    # pin to exactly this node, through the scheduler (like a DaemonSet pod)
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                                ]
                            }
                        }
                    },
                    # pinned to one node by name, like a DaemonSet pod: whatever taints it has are tolerated
                    "tolerations": [{"operator": "Exists"}],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": INFERENCE_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "probe",
                            "image": image,
                            "command": ["python", "-m", "whisper_inference.gpu_probe"],
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File",
                            "resources": {
                                "limits": {GPU_RESOURCE: "1", "cpu": "500m", "memory": "512Mi"},
                                "requests": {GPU_RESOURCE: "1", "cpu": "100m", "memory": "128Mi"},
                            },
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        }
                    ],
                },
            },
        },
    }


def parse_message(message: str | None) -> dict[str, Any] | None:
    """The probe's JSON answer, or None when the message is empty; malformed answers become {"error": ...}."""
    if not message or not message.strip():
        return None
    try:
        answer = json.loads(message.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"unreadable probe answer: {message[:200]!r}"}
    if not isinstance(answer, dict):
        return {"error": f"unexpected probe answer: {message[:200]!r}"}
    if "error" in answer:
        return {"error": str(answer["error"])}
    try:
        major, minor = int(answer["major"]), int(answer.get("minor", 0))
    except (KeyError, TypeError, ValueError):
        return {"error": f"probe answer without a compute capability: {message[:200]!r}"}
    out: dict[str, Any] = {"major": major, "minor": minor}
    if answer.get("product"):
        out["product"] = str(answer["product"])
    if answer.get("memoryMiB") is not None:
        out["memoryMiB"] = int(answer["memoryMiB"])
    return out


def read_pods(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The answer from the probe Job's pods: the first terminated container with a message."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated")
            if terminated:
                answer = parse_message(terminated.get("message"))
                if answer is None:
                    answer = {"error": f"probe exited {terminated.get('exitCode')} without an answer"}
                return answer
    return None


def job_failed(job: dict[str, Any]) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return c.get("message") or c.get("reason") or "probe Job failed"
    return None


def failed_answer(previous: dict[str, Any] | None, error: str, now: float, base_delay: float) -> dict[str, Any]:
    """A failure, with when to try again: base_delay, doubled per consecutive failure, at most an hour."""
    attempts = int((previous or {}).get("attempts", 0)) + 1 if previous and "error" in previous else 1
    delay = min(MAX_RETRY_SECONDS, base_delay * 2 ** (attempts - 1))
    return {"error": error, "attempts": attempts, "retryAt": now + delay}


def due(answer: dict[str, Any] | None, now: float) -> bool:
    """Whether a node needs (another) probe: never answered, or failed and its backoff has passed."""
    if answer is None:
        return True
    if "major" in answer:
        return False
    return now >= float(answer.get("retryAt", 0))
