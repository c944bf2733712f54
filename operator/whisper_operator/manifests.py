"""Desired child objects (pure): (endpoint, profile, settings) -> Deployment and Service dicts.

They are applied with server-side apply, so every field listed here is owned by the operator: a hand edit of one of
them is reverted at the next reconcile, and fields nobody lists here are left alone.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from . import GROUP, KIND, MANAGED_BY, VERSION
from .config import OperatorSettings
from .nodes import GPU_RESOURCE
from .probe import INFERENCE_UID
from .profile import Profile, arch_term
from .spec import MODELS_DIR, EndpointSpec

CONTAINER_PORT = 8080
API_KEY_DIR = "/var/run/secrets/kubewhisper"
PRE_STOP_SECONDS = 5  # kube-proxy/endpoints drop the pod before the server starts draining
DRAIN_MARGIN_SECONDS = 5  # the server exits this long before the kubelet's SIGKILL
ENDPOINT_LABEL = f"{GROUP}/endpoint"
# The root filesystem is read-only; these are the paths the server writes (Dockerfile.inference points HOME,
# XDG_CACHE_HOME, HF_HOME (/models/hf), NUMBA/TRITON/TORCHINDUCTOR/VLLM caches and TMPDIR at them)
CACHE_DIR = "/home/whisper/.cache"
TMP_DIR = "/tmp"
# the model image's init container: it copies, nothing more (sized so it never is what blocks scheduling)
MODEL_COPY_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}


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


def owner_reference(body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_metadata(body: dict[str, Any]) -> dict[str, Any]:
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


def merge_affinity(affinity: dict[str, Any] | None, pin: list[dict[str, Any]]) -> dict[str, Any] | None:
    """AND each pin term into every required node selector term of the user's affinity (the pin's terms are ORed,
    so the result is their cross product)."""
    if not pin:
        return copy.deepcopy(affinity) if affinity else None
    out = copy.deepcopy(affinity or {})
    node = out.setdefault("nodeAffinity", {})
    required = node.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or [{}]
    merged = []
    for term in terms:
        for p in pin:
            t = copy.deepcopy(term)
            for key in ("matchExpressions", "matchFields"):
                if p.get(key):
                    t[key] = list(t.get(key) or []) + copy.deepcopy(p[key])
            merged.append(t)
    required["nodeSelectorTerms"] = merged
    return out


def grace_seconds(spec: EndpointSpec, settings: OperatorSettings) -> int:
    """terminationGracePeriodSeconds: the endpoint's own, else the operator's default."""
    return spec.termination_grace_period_seconds or settings.termination_grace_seconds


def container_env(spec: EndpointSpec, profile: Profile, grace: int = 60) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "MODEL_ID", "value": spec.model},
        {"name": "SERVED_MODEL_NAME", "value": spec.served_name},
        *({"name": k, "value": v} for k, v in profile.env().items()),
        {"name": "TIMESTAMPS", "value": spec.timestamps},
        {"name": "HOST", "value": "0.0.0.0"},
        {"name": "PORT", "value": str(CONTAINER_PORT)},
        # after the preStop pause, drain in-flight requests and exit before the kubelet's SIGKILL
        {"name": "GRACE_PERIOD_SECONDS", "value": str(max(1, grace - PRE_STOP_SECONDS - DRAIN_MARGIN_SECONDS))},
    ]
    if spec.language_force:
        env.append({"name": "LANGUAGE_FORCE", "value": spec.language_force})
    if spec.max_audio_seconds is not None:
        env.append({"name": "MAX_AUDIO_SECONDS", "value": str(spec.max_audio_seconds)})
    if spec.window_seconds is not None:
        env.append({"name": "WHISPER_WINDOW_SECONDS", "value": f"{spec.window_seconds:g}"})
    chunking = spec.chunking.env
    if chunking is not None:  # none is the server's own default: the variable is left out
        env.append({"name": "CHUNKING_STRATEGY", "value": chunking})
    if spec.api_key_secret_ref:
        # a file, not API_KEY: the kubelet refreshes a mounted Secret and the server re-reads API_KEY_FILE
        env.append({"name": "API_KEY_FILE", "value": f"{API_KEY_DIR}/api-key"})
    if spec.model_cache:
        env.append({"name": "HF_HOME", "value": spec.model_cache.mount_path})
    # spec.env is applied last: an entry replaces any earlier one of the same name
    for extra in spec.env:
        env = [e for e in env if e["name"] != extra["name"]] + [copy.deepcopy(extra)]
    return env


# model name -> (cpu, memory) requests when spec.resources sets none: enough that the pod is never BestEffort and
# is not the first evicted under memory pressure (host RAM holds the weights while they load)
_SIZES = (("large", "12Gi"), ("turbo", "12Gi"), ("medium", "8Gi"), ("small", "4Gi"), ("base", "3Gi"), ("tiny", "2Gi"))


def default_requests(model: str) -> dict[str, str]:
    tokens = set(re.split(r"[^a-z0-9]+", model.lower()))
    memory = next((m for size, m in _SIZES if size in tokens), "12Gi")
    return {"cpu": "2", "memory": memory}


def resources(spec: EndpointSpec) -> dict[str, Any]:
    count = str(spec.gpu.count)
    limits: dict[str, Any] = dict(spec.resources.limits)
    # a resource with only a limit gets request = limit from the API server; defaults fill the rest
    defaults = {k: v for k, v in default_requests(spec.model).items() if k not in limits}
    requests: dict[str, Any] = {**defaults, **spec.resources.requests}
    if spec.on_cpu:
        # a CPU endpoint always has CPU and memory limits: the engine sizes its threads from the CPU limit (cgroup
        # quota), and without one it would start a thread per core of the node; unset limits equal the requests
        for key in ("cpu", "memory"):
            limits.setdefault(key, requests[key])
        return {"limits": limits, "requests": requests}
    limits[GPU_RESOURCE] = count
    requests[GPU_RESOURCE] = count
    return {"limits": limits, "requests": requests}


def tolerations(spec: EndpointSpec) -> list[dict[str, Any]]:
    """The user's tolerations, plus, on GPU endpoints, one for taints keyed by the GPU resource (what
    ExtendedResourceToleration adds). A CPU endpoint gets none: it must not land on tainted GPU nodes."""
    out = copy.deepcopy(spec.tolerations)
    if spec.on_cpu:
        return out
    if not any(t.get("key") == GPU_RESOURCE and t.get("operator") == "Exists" and not t.get("effect") for t in out):
        out.append({"key": GPU_RESOURCE, "operator": "Exists"})
    return out


def strategy(spec: EndpointSpec) -> dict[str, Any]:
    r = spec.rollout
    if r.strategy == "Recreate":
        return {"type": "Recreate"}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": r.max_surge, "maxUnavailable": r.max_unavailable}}


def _restricted_container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def model_copy_container(spec: EndpointSpec, models_volume: str) -> dict[str, Any]:
    """The init container of spec.modelImage: copies the image's /model/ tree into /models. `cp -R`, not `cp -a`: as
    the non-root UID, preserving the times and mode of the volume's root (owned by root) fails with EPERM."""
    assert spec.model_image
    return {
        "name": "model",
        "image": spec.model_image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["cp", "-R", "/model/.", f"{MODELS_DIR}/"],
        "resources": copy.deepcopy(MODEL_COPY_RESOURCES),
        "securityContext": _restricted_container_security(),
        "volumeMounts": [{"name": models_volume, "mountPath": MODELS_DIR}],
    }


def default_image(spec: EndpointSpec, settings: OperatorSettings) -> str:
    if spec.image:
        return spec.image
    return settings.default_cpu_image if spec.on_cpu else settings.default_image


def deployment(
    body: dict[str, Any], spec: EndpointSpec, profile: Profile, settings: OperatorSettings
) -> dict[str, Any]:
    name = body["metadata"]["name"]
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
        {"name": "cache", "emptyDir": {"sizeLimit": "4Gi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": TMP_DIR},
        {"name": "cache", "mountPath": CACHE_DIR},
    ]
    cache = spec.model_cache
    models_volume = "models"
    if cache and cache.mount_path.rstrip("/") == MODELS_DIR:
        models_volume = "model-cache"  # the claim is /models: the model image copies into it
    else:
        # writable /models (HF_HOME is /models/hf in the image) on the read-only root
        volumes.append({"name": "models", "emptyDir": {}})
        mounts.append({"name": "models", "mountPath": MODELS_DIR})
    if cache:
        volumes.append(
            {
                "name": "model-cache",
                "persistentVolumeClaim": {"claimName": cache.claim_name, "readOnly": cache.read_only},
            }
        )
        mounts.append({"name": "model-cache", "mountPath": cache.mount_path, "readOnly": cache.read_only})
    ref = spec.api_key_secret_ref
    if ref:
        volumes.append(
            {
                "name": "api-key",
                "secret": {
                    "secretName": ref.name,
                    "items": [{"key": ref.key, "path": "api-key"}],
                    "defaultMode": 0o440,
                },
            }
        )
        mounts.append({"name": "api-key", "mountPath": API_KEY_DIR, "readOnly": True})
    grace = grace_seconds(spec, settings)
    startup_period = 10
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace,
        "automountServiceAccountToken": False,
        "securityContext": {  # Pod Security Standards: restricted
            "runAsNonRoot": True,
            "runAsUser": INFERENCE_UID,
            "runAsGroup": INFERENCE_UID,
            "fsGroup": INFERENCE_UID,
            # a model cache of many files is not re-chowned at every pod start
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "whisper",
                "image": default_image(spec, settings),
                "imagePullPolicy": spec.image_pull_policy,
                "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
                "env": container_env(spec, profile, grace),
                "resources": resources(spec),
                # /ready: the model is loaded and the engine answers; liveness starts only after that
                "startupProbe": {
                    "httpGet": {"path": "/ready", "port": "http"},
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
                # Services stop routing to a terminating pod only after the endpoints update propagates
                "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}},
                "securityContext": _restricted_container_security(),
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    if spec.model_image:
        pod_spec["initContainers"] = [model_copy_container(spec, models_volume)]
    tols = tolerations(spec)
    if tols:
        pod_spec["tolerations"] = tols
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    pin = [{**t, "matchExpressions": [*t.get("matchExpressions", []), arch_term(spec)]} for t in profile.pin] or [
        {"matchExpressions": [arch_term(spec)]}
    ]
    affinity = merge_affinity(spec.affinity, pin)
    if affinity:
        pod_spec["affinity"] = affinity
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owned_metadata(body),
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": 3,
            # longer than the startup budget plus scheduling and an image pull, or a slow load reads as failure
            "progressDeadlineSeconds": settings.startup_probe_seconds + 600,
            "selector": {"matchLabels": selector_labels(name)},
            "strategy": strategy(spec),
            "template": {
                "metadata": {
                    "labels": labels(name),
                    "annotations": {f"{GROUP}/compute-capability": profile.computeCapability},
                },
                "spec": pod_spec,
            },
        },
    }


def service(body: dict[str, Any], spec: EndpointSpec) -> dict[str, Any]:
    name = body["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owned_metadata(body),
        "spec": {
            "type": spec.service.type,
            "selector": selector_labels(name),
            "ports": [{"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(body: dict[str, Any], api_version: str) -> dict[str, Any]:
    """At most one pod of a multi-replica endpoint voluntarily evicted at a time (drains, autoscaler scale-down)."""
    return {
        "apiVersion": api_version,
        "kind": "PodDisruptionBudget",
        "metadata": owned_metadata(body),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(body["metadata"]["name"])}},
    }
