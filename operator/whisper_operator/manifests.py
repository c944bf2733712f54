"""Desired child objects (pure): (endpoint, profile, settings) -> Deployment and Service dicts.

They are applied with server-side apply, so every field listed here is owned by the operator: a hand edit of one of
them is reverted at the next reconcile, and fields nobody lists here are left alone.
"""

from __future__ import annotations

import copy

from . import GROUP, KIND, MANAGED_BY, VERSION
from .config import OperatorSettings
from .nodes import GPU_RESOURCE
from .probe import INFERENCE_UID
from .profile import Profile

CONTAINER_PORT = 8080
ENDPOINT_LABEL = f"{GROUP}/endpoint"


def selector_labels(name: str) -> dict[str, str]:
    return {ENDPOINT_LABEL: name, "app.kubernetes.io/component": "inference"}


def labels(name: str) -> dict[str, str]:
    return {
        **selector_labels(name),
        "app.kubernetes.io/name": "kubewhisper",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def owner_reference(body: dict) -> dict:
    meta = body["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_metadata(body: dict) -> dict:
    """Metadata of a child the endpoint owns: its name, namespace and labels, and the controller reference that
    lets garbage collection delete it with the endpoint."""
    meta = body["metadata"]
    return {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "labels": labels(meta["name"]),
        "ownerReferences": [owner_reference(body)],
    }


def service_url(name: str, namespace: str, port: int, domain: str) -> str:
    host = f"{name}.{namespace}.svc.{domain}"
    return f"http://{host}{'' if port == 80 else f':{port}'}/v1/audio/transcriptions"


def merge_affinity(affinity: dict | None, pin: dict | None) -> dict | None:
    """AND the pin term into every required node selector term of the user's affinity."""
    if not pin:
        return copy.deepcopy(affinity) if affinity else None
    out = copy.deepcopy(affinity or {})
    node = out.setdefault("nodeAffinity", {})
    required = node.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or [{}]
    merged = []
    for term in terms:
        t = copy.deepcopy(term)
        for key in ("matchExpressions", "matchFields"):
            if pin.get(key):
                t[key] = list(t.get(key) or []) + copy.deepcopy(pin[key])
        merged.append(t)
    required["nodeSelectorTerms"] = merged
    return out


def container_env(spec: dict, profile: Profile, grace_seconds: int = 60) -> list[dict]:
    env: list[dict] = [
        {"name": "MODEL_ID", "value": spec["model"]},
        {"name": "SERVED_MODEL_NAME", "value": spec.get("servedModelName") or spec["model"]},
        *({"name": k, "value": v} for k, v in profile.env().items()),
        {"name": "TIMESTAMPS", "value": spec.get("timestamps") or "auto"},
        {"name": "HOST", "value": "0.0.0.0"},
        {"name": "PORT", "value": str(CONTAINER_PORT)},
        # drain in-flight requests, then exit before the kubelet's SIGKILL at terminationGracePeriodSeconds
        {"name": "GRACE_PERIOD_SECONDS", "value": str(max(1, grace_seconds - 10))},
    ]
    if spec.get("languageForce"):
        env.append({"name": "LANGUAGE_FORCE", "value": spec["languageForce"]})
    if spec.get("maxAudioSeconds") is not None:
        env.append({"name": "MAX_AUDIO_SECONDS", "value": str(spec["maxAudioSeconds"])})
    if spec.get("windowSeconds") is not None:
        env.append({"name": "WHISPER_WINDOW_SECONDS", "value": str(spec["windowSeconds"])})
    ref = spec.get("apiKeySecretRef")
    if ref:
        env.append(
            {
                "name": "API_KEY",
                "valueFrom": {
                    "secretKeyRef": {"name": ref["name"], "key": ref.get("key") or "api-key", "optional": False}
                },
            }
        )
    cache = spec.get("modelCache")
    if cache:
        env.append({"name": "HF_HOME", "value": cache.get("mountPath") or "/models"})
    # spec.env is applied last: an entry replaces any earlier one of the same name
    for extra in spec.get("env") or []:
        env = [e for e in env if e["name"] != extra["name"]] + [copy.deepcopy(extra)]
    return env


def resources(spec: dict) -> dict:
    count = str((spec.get("gpu") or {}).get("count") or 1)
    res = copy.deepcopy(spec.get("resources") or {})
    res.setdefault("limits", {})[GPU_RESOURCE] = count
    res.setdefault("requests", {})[GPU_RESOURCE] = count
    return res


def deployment(body: dict, profile: Profile, settings: OperatorSettings) -> dict:
    meta, spec = body["metadata"], body["spec"]
    name = meta["name"]
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    cache = spec.get("modelCache")
    if cache:
        volumes.append(
            {
                "name": "model-cache",
                "persistentVolumeClaim": {
                    "claimName": cache["claimName"],
                    "readOnly": bool(cache.get("readOnly", False)),
                },
            }
        )
        mounts.append(
            {
                "name": "model-cache",
                "mountPath": cache.get("mountPath") or "/models",
                "readOnly": bool(cache.get("readOnly", False)),
            }
        )
    startup_period = 10
    pod_spec = {
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "automountServiceAccountToken": False,
        "securityContext": {  # Pod Security Standards: restricted
            "runAsNonRoot": True,
            "runAsUser": INFERENCE_UID,
            "runAsGroup": INFERENCE_UID,
            "fsGroup": INFERENCE_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "whisper",
                "image": spec.get("image") or settings.default_image,
                "imagePullPolicy": spec.get("imagePullPolicy") or "IfNotPresent",
                "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
                "env": container_env(spec, profile, settings.termination_grace_seconds),
                "resources": resources(spec),
                "startupProbe": {
                    "httpGet": {"path": "/health", "port": "http"},
                    "periodSeconds": startup_period,
                    "failureThreshold": max(1, settings.startup_probe_seconds // startup_period),
                },
                "livenessProbe": {
                    "httpGet": {"path": "/health", "port": "http"},
                    "periodSeconds": 10,
                    "timeoutSeconds": 5,
                    "failureThreshold": 3,
                },
                "readinessProbe": {
                    "httpGet": {"path": "/ready", "port": "http"},
                    "periodSeconds": 5,
                    "timeoutSeconds": 3,
                    "failureThreshold": 3,
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    if spec.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(spec["nodeSelector"])
    if spec.get("tolerations"):
        pod_spec["tolerations"] = copy.deepcopy(spec["tolerations"])
    affinity = merge_affinity(spec.get("affinity"), profile.pin)
    if affinity:
        pod_spec["affinity"] = affinity
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owned_metadata(body),
        "spec": {
            "replicas": int(spec.get("replicas", 1)),
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": labels(name),
                    "annotations": {f"{GROUP}/compute-capability": profile.computeCapability},
                },
                "spec": pod_spec,
            },
        },
    }


def service(body: dict) -> dict:
    spec = body["spec"]
    svc = spec.get("service") or {}
    name = body["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owned_metadata(body),
        "spec": {
            "type": svc.get("type") or "ClusterIP",
            "selector": selector_labels(name),
            "ports": [{"name": "http", "port": int(svc.get("port") or 80), "targetPort": "http", "protocol": "TCP"}],
        },
    }
