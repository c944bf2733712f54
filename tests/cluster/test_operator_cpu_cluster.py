"""CPU endpoints (gpu.count 0) against the real control plane: the API server admits them (the CRD's minimum is 0),
the operator makes a Deployment with no GPU, the model image's init container and a read-only root, the scheduler
puts the pod on a CPU node and never on a GPU node, and the status says cpu."""

from __future__ import annotations

import pytest
from kubernetes import client

from .helpers import (
    condition,
    create_endpoint,
    deployment,
    env_of,
    fake_node,
    get_endpoint,
    mark_pods_ready,
    patch_spec,
    wait_for,
)

pytestmark = pytest.mark.cluster
MODEL_IMAGE = "ghcr.io/kubewhisper/kubewhisper-model-whisper-base:0.1.0"
SELECTOR = "kubewhisper.dev/endpoint=whisper-cpu"


@pytest.fixture(scope="module")
def cpu_node(api):
    """A node without GPUs and without nvidia.com/gpu.present (no kubelet: the scheduler binds, nothing runs)."""
    core = client.CoreV1Api(api)
    node = fake_node("cpu-fake-1", "cpu", {}, gpus=0, cpu="4", memory="16Gi")
    core.create_node(node)
    yield "cpu-fake-1"
    core.delete_node("cpu-fake-1")


def test_cpu_endpoint_runs_off_gpu_nodes_with_its_model_image(api, operator, cpu_node, namespace):
    create_endpoint(
        api,
        namespace,
        "whisper-cpu",
        {
            "model": "/models/whisper-base",
            "servedModelName": "whisper-base",
            "modelImage": MODEL_IMAGE,
            "gpu": {"count": 0},
            "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "3Gi"}},
        },
    )
    dep = wait_for(lambda: deployment(api, namespace, "whisper-cpu"), what="whisper-cpu deployment")
    pod_spec = dep.spec.template.spec
    c = pod_spec.containers[0]
    assert "nvidia.com/gpu" not in (c.resources.limits or {}) and "nvidia.com/gpu" not in (c.resources.requests or {})
    assert c.resources.limits == {"cpu": "2", "memory": "3Gi"}
    assert c.image.endswith("-cpu") and c.security_context.read_only_root_filesystem is True
    env = env_of(dep)
    assert env["DTYPE"] == "float32" and env["ENGINE"] == "ctranslate2" and env["MODEL_ID"] == "/models/whisper-base"
    assert env["CHUNKING_STRATEGY"] == "auto"  # the CPU pool's default: VAD windows
    assert not pod_spec.tolerations
    (init,) = pod_spec.init_containers
    assert init.image == MODEL_IMAGE and init.image_pull_policy == "IfNotPresent"
    assert {m.mount_path for m in c.volume_mounts} >= {"/models", "/tmp", "/home/whisper/.cache"}

    # the real scheduler: the pod goes to the CPU node, not to any of the fake GPU nodes (all nvidia.com/gpu.present)
    core = client.CoreV1Api(api)
    pod = wait_for(
        lambda: next(
            (p for p in core.list_namespaced_pod(namespace, label_selector=SELECTOR).items if p.spec.node_name), None
        ),
        what="the CPU pod scheduled",
    )
    assert pod.spec.node_name == cpu_node

    wait_for(lambda: mark_pods_ready(api, namespace, SELECTOR), what="pods to mark ready")
    body = wait_for(
        lambda: (b := get_endpoint(api, namespace, "whisper-cpu"))
        and condition(b, "Ready").get("status") == "True"
        and b,
        timeout=60,
        what="whisper-cpu Ready",
    )
    st = body["status"]
    assert (
        st["accelerator"] == "cpu" and st["profile"]["placement"] == "CPU" and st["profile"]["engine"] == "ctranslate2"
    )
    assert st["profile"]["chunkingStrategy"] == "auto"  # kept by the CRD's status schema, not pruned
    assert "gpuClass" not in st and condition(body, "GPUCompatible")["reason"] == "NoGPURequested"
    assert condition(body, "Degraded")["status"] == "False"


def test_gpu_settings_on_a_cpu_endpoint_are_degraded(api, operator, namespace):
    create_endpoint(
        api, namespace, "cpu-bf16", {"model": "/models/whisper-base", "gpu": {"count": 0}, "dtype": "bfloat16"}
    )
    body = wait_for(
        lambda: (b := get_endpoint(api, namespace, "cpu-bf16"))
        and condition(b, "Degraded").get("status") == "True"
        and b,
        what="Degraded",
    )
    assert condition(body, "Degraded")["reason"] == "UnsupportedOnCPU"
    with pytest.raises(client.exceptions.ApiException):
        deployment(api, namespace, "cpu-bf16")


def test_a_gpu_endpoint_turned_cpu_drops_its_gpu_class(api, operator, cpu_node, namespace):
    create_endpoint(api, namespace, "flip", {"model": "openai/whisper-base", "nodeSelector": {"pool": "t4"}})
    wait_for(lambda: (get_endpoint(api, namespace, "flip").get("status") or {}).get("gpuClass"), what="gpuClass")
    patch_spec(api, namespace, "flip", {"gpu": {"count": 0}, "nodeSelector": None})
    body = wait_for(
        lambda: (b := get_endpoint(api, namespace, "flip"))["status"].get("accelerator") == "cpu" and b, what="cpu"
    )
    assert "gpuClass" not in body["status"]
    dep = deployment(api, namespace, "flip")
    assert "nvidia.com/gpu" not in (dep.spec.template.spec.containers[0].resources.limits or {})
