"""Small polling helpers for the cluster tier (real API calls, no mocks)."""

from __future__ import annotations

import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "kubewhisper.dev", "v1alpha1", "whisperendpoints"


def wait_for(fn, timeout: float = 30, interval: float = 0.25, what: str = "condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
        except ApiException as e:
            if e.status != 404:
                raise
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def create_endpoint(api, namespace: str, name: str, spec: dict) -> dict:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WhisperEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def get_endpoint(api, namespace: str, name: str) -> dict:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def patch_spec(api, namespace: str, name: str, spec: dict) -> dict:
    return client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}, _content_type="application/merge-patch+json"
    )


def condition(body: dict, type_: str) -> dict:
    for c in (body.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return {}


def deployment(api, namespace: str, name: str):
    return client.AppsV1Api(api).read_namespaced_deployment(name, namespace)


def env_of(dep) -> dict[str, str]:
    return {e.name: e.value for e in dep.spec.template.spec.containers[0].env}


def mark_pods_ready(api, namespace: str, selector: str) -> int:
    """Simulate a kubelet (there is none): set Running + Ready on the pods' status subresource."""
    core = client.CoreV1Api(api)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    n = 0
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        if pod.metadata.deletion_timestamp:
            continue
        status = {
            "phase": "Running",
            "startTime": now,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": "whisper",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "image": pod.spec.containers[0].image,
                    "imageID": "",
                    "containerID": "fake://1",
                    "state": {"running": {"startedAt": now}},
                }
            ],
        }
        core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": status})
        n += 1
    return n


def fake_node(
    name: str,
    pool: str,
    labels: dict[str, str],
    gpus: int = 8,
    taints: list | None = None,
    cpu: str = "64",
    memory: str = "512Gi",
) -> dict:
    """A Node object with no kubelet: the scheduler binds pods to it, nothing runs. With gpus=0 a CPU node: no
    nvidia.com/gpu capacity and no nvidia.com/gpu.present label."""
    cap = {"cpu": cpu, "memory": memory, "pods": "110"}
    gpu_labels = {}
    if gpus:
        cap["nvidia.com/gpu"] = str(gpus)
        gpu_labels["nvidia.com/gpu.present"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            # nvidia.com/gpu.present: what GPU Feature Discovery puts on every GPU node (CPU endpoints avoid it)
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/arch": "amd64",
                "pool": pool,
                **gpu_labels,
                **labels,
            },
        },
        "spec": {"taints": taints or []},
        "status": {
            "capacity": cap,
            "allocatable": cap,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "fake",
                    "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        },
    }
