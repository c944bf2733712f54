"""The operator against a real control plane: create, readiness, rollout, restoration, GC, invalid specs, restart
and the NVML probe path."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .helpers import (
    GROUP,
    PLURAL,
    VERSION,
    condition,
    create_endpoint,
    deployment,
    env_of,
    get_endpoint,
    mark_pods_ready,
    patch_spec,
    wait_for,
)

pytestmark = pytest.mark.cluster
MODEL = "openai/whisper-large-v3"
OPERATOR_NS = "default"  # KUBEWHISPER_LEASE_NAMESPACE in conftest.OPERATOR_ENV: probes run there


def test_env_per_pool(api, operator, namespace):
    """T4 -> half/fp16/TRITON_ATTN, H100 -> bfloat16/FLASH_ATTN, A10G (product label only) -> bfloat16."""
    create_endpoint(api, namespace, "t4", {"model": MODEL, "nodeSelector": {"pool": "t4"}})
    create_endpoint(
        api, namespace, "h100", {"model": MODEL, "nodeSelector": {"pool": "h100"}, "apiKeySecretRef": {"name": "key"}}
    )
    create_endpoint(api, namespace, "a10g", {"model": MODEL, "nodeSelector": {"pool": "a10g"}})
    t4 = env_of(wait_for(lambda: deployment(api, namespace, "t4"), what="t4 deployment"))
    assert (t4["DTYPE"], t4["VLLM_KV_CACHE_DTYPE"], t4["VLLM_ATTENTION_BACKEND"], t4["VLLM_USE_FLASHINFER"]) == (
        "half",
        "fp16",
        "TRITON_ATTN",
        "0",
    )
    h100_dep = wait_for(lambda: deployment(api, namespace, "h100"), what="h100 deployment")
    h100 = env_of(h100_dep)
    assert (h100["DTYPE"], h100["VLLM_ATTENTION_BACKEND"]) == ("bfloat16", "FLASH_ATTN")
    # the API key is a mounted Secret file the server re-reads (rotation without a restart)
    assert env_of(h100_dep)["API_KEY_FILE"] == "/var/run/secrets/kubewhisper/api-key"
    key_volume = [v for v in h100_dep.spec.template.spec.volumes if v.name == "api-key"][0]
    assert key_volume.secret.secret_name == "key"
    assert h100_dep.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert h100_dep.metadata.owner_references[0].kind == "WhisperEndpoint"
    a10g = env_of(wait_for(lambda: deployment(api, namespace, "a10g"), what="a10g deployment"))
    assert a10g["DTYPE"] == "bfloat16"
    svc = wait_for(lambda: client.CoreV1Api(api).read_namespaced_service("h100", namespace), what="service")
    assert svc.spec.ports[0].port == 80
    body = wait_for(
        lambda: (b := get_endpoint(api, namespace, "a10g")).get("status", {}).get("profile") and b, what="a10g profile"
    )
    assert body["status"]["profile"]["computeCapability"] == "8.6"
    assert body["status"]["url"] == f"http://a10g.{namespace}.svc.cluster.local/v1/audio/transcriptions"
    assert condition(body, "GPUCompatible")["status"] == "True"


def test_ready_after_pods_ready_and_scale(api, operator, namespace):
    create_endpoint(api, namespace, "ep", {"model": MODEL, "replicas": 2, "nodeSelector": {"pool": "h100"}})
    wait_for(lambda: deployment(api, namespace, "ep"), what="deployment")
    body = get_endpoint(api, namespace, "ep")
    wait_for(
        lambda: len(
            client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="kubewhisper.dev/endpoint=ep").items
        )
        == 2,
        what="2 pods",
    )
    assert condition(get_endpoint(api, namespace, "ep"), "Ready").get("status") != "True"
    mark_pods_ready(api, namespace, "kubewhisper.dev/endpoint=ep")
    body = wait_for(
        lambda: condition(b := get_endpoint(api, namespace, "ep"), "Ready").get("status") == "True" and b,
        timeout=30,
        what="Ready=True",
    )
    assert body["status"]["readyReplicas"] == 2
    assert condition(body, "Progressing")["status"] == "False"
    assert condition(body, "Degraded")["status"] == "False"
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    # the scale subresource drives spec.replicas
    client.CustomObjectsApi(api).patch_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, PLURAL, "ep", {"spec": {"replicas": 1}}, _content_type="application/merge-patch+json"
    )
    wait_for(lambda: deployment(api, namespace, "ep").spec.replicas == 1, what="scaled to 1")


def test_spec_update_rolls_and_status_written_only_on_change(api, operator, namespace):
    create_endpoint(api, namespace, "ep", {"model": MODEL, "nodeSelector": {"pool": "h100"}})
    dep = wait_for(lambda: deployment(api, namespace, "ep"), what="deployment")
    gen = dep.metadata.generation
    wait_for(
        lambda: get_endpoint(api, namespace, "ep").get("status", {}).get("observedGeneration") == 1,
        what="observedGeneration 1",
    )

    # The Deployment's own status settles after observedGeneration 1 (the controller fills in replicas and
    # conditions, which the endpoint's status mirrors): wait until the endpoint stops changing for 2 s. An operator
    # that rewrote its status on every resync would never settle, and this wait would fail.
    def settled() -> str | None:
        first = get_endpoint(api, namespace, "ep")["metadata"]["resourceVersion"]
        time.sleep(2)
        return first if get_endpoint(api, namespace, "ep")["metadata"]["resourceVersion"] == first else None

    rv = wait_for(settled, what="the endpoint's status settled")
    # status is not rewritten while nothing changes (several resync periods)
    time.sleep(5)
    assert get_endpoint(api, namespace, "ep")["metadata"]["resourceVersion"] == rv
    patch_spec(api, namespace, "ep", {"dtype": "float32", "env": [{"name": "EXTRA", "value": "1"}]})
    dep = wait_for(lambda: (d := deployment(api, namespace, "ep")).metadata.generation > gen and d, what="rollout")
    env = env_of(dep)
    assert env["DTYPE"] == "float32" and env["EXTRA"] == "1"
    body = wait_for(
        lambda: (b := get_endpoint(api, namespace, "ep"))["status"]["observedGeneration"] == 2 and b,
        what="observedGeneration 2",
    )
    assert body["status"]["profile"]["dtype"] == "float32"


def test_deleted_or_edited_deployment_is_restored(api, operator, namespace):
    create_endpoint(api, namespace, "ep", {"model": MODEL, "nodeSelector": {"pool": "t4"}})
    dep = wait_for(lambda: deployment(api, namespace, "ep"), what="deployment")
    # hand edit of an owned field
    client.AppsV1Api(api).patch_namespaced_deployment(
        "ep",
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "whisper", "env": [{"name": "DTYPE", "value": "bfloat16"}]}]}
                }
            }
        },
    )
    wait_for(lambda: env_of(deployment(api, namespace, "ep"))["DTYPE"] == "half", what="edit reverted")
    client.AppsV1Api(api).delete_namespaced_deployment("ep", namespace)
    new = wait_for(
        lambda: (d := deployment(api, namespace, "ep")).metadata.uid != dep.metadata.uid and d,
        what="deployment restored",
    )
    assert env_of(new)["DTYPE"] == "half"


def test_delete_garbage_collects(api, operator, namespace):
    create_endpoint(api, namespace, "ep", {"model": MODEL, "nodeSelector": {"pool": "t4"}})
    wait_for(lambda: deployment(api, namespace, "ep"), what="deployment")
    wait_for(lambda: client.CoreV1Api(api).read_namespaced_service("ep", namespace), what="service")
    client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "ep")

    def gone():
        try:
            deployment(api, namespace, "ep")
            return False
        except ApiException as e:
            return e.status == 404

    wait_for(gone, timeout=60, what="deployment garbage-collected")


def test_schema_refuses_invalid_spec(api, operator, namespace):
    for spec in (
        {"model": MODEL, "replicas": -1},
        {"model": MODEL, "dtype": "fp64"},
        {"replicas": 1},
        {"model": MODEL, "attentionBackend": "FLASHINFER"},
    ):
        with pytest.raises(ApiException) as err:
            create_endpoint(api, namespace, "bad", spec)
        assert err.value.status == 422, spec


def test_cross_field_rule_sets_degraded_without_deployment(api, operator, namespace):
    """dtype bfloat16 on a T4 pool (CC 7.5): no webhook installed here, so Degraded and no Deployment."""
    create_endpoint(api, namespace, "ep", {"model": MODEL, "dtype": "bfloat16", "nodeSelector": {"pool": "t4"}})
    body = wait_for(
        lambda: condition(b := get_endpoint(api, namespace, "ep"), "Degraded").get("status") == "True" and b,
        what="Degraded",
    )
    assert condition(body, "Degraded")["reason"] == "UnsupportedDtype"
    assert "8.0" in condition(body, "Degraded")["message"]
    assert condition(body, "GPUCompatible")["status"] == "False"
    with pytest.raises(ApiException) as err:
        deployment(api, namespace, "ep")
    assert err.value.status == 404
    events = client.CoreV1Api(api).list_namespaced_event(namespace).items
    assert any(e.reason == "UnsupportedDtype" for e in events)
    # fixing the spec recovers
    patch_spec(api, namespace, "ep", {"dtype": "auto"})
    assert env_of(wait_for(lambda: deployment(api, namespace, "ep"), what="deployment"))["DTYPE"] == "half"
    wait_for(
        lambda: condition(get_endpoint(api, namespace, "ep"), "Degraded").get("status") == "False",
        what="Degraded cleared",
    )


def test_mixed_pool_pins_to_one_class(api, operator, namespace):
    create_endpoint(api, namespace, "pin", {"model": MODEL, "nodeSelector": {"pool": "mixed"}})
    create_endpoint(
        api,
        namespace,
        "safe",
        {"model": MODEL, "nodeSelector": {"pool": "mixed"}, "gpu": {"mixedPoolPolicy": "SafestCommon"}},
    )
    pin = wait_for(lambda: deployment(api, namespace, "pin"), what="pinned deployment")
    assert env_of(pin)["DTYPE"] == "bfloat16"
    terms = pin.spec.template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    exprs = {e.key: e.values for e in terms.node_selector_terms[0].match_expressions}
    assert exprs["nvidia.com/gpu.compute.major"] == ["9"]
    body = wait_for(
        lambda: (b := get_endpoint(api, namespace, "pin")).get("status", {}).get("profile") and b, what="profile"
    )
    assert body["status"]["profile"]["placement"] == "Pinned"
    safe = wait_for(lambda: deployment(api, namespace, "safe"), what="safest deployment")
    assert env_of(safe)["DTYPE"] == "half"
    # scheduled onto the pinned class by the real scheduler
    pods = wait_for(
        lambda: [
            p
            for p in client.CoreV1Api(api)
            .list_namespaced_pod(namespace, label_selector="kubewhisper.dev/endpoint=pin")
            .items
            if p.spec.node_name
        ],
        what="bound pod",
    )
    assert pods[0].spec.node_name == "mixed-h100"


def test_nvml_probe_path(api, operator, namespace):
    create_endpoint(api, namespace, "ep", {"model": MODEL, "nodeSelector": {"pool": "bare"}})
    body = wait_for(
        lambda: condition(b := get_endpoint(api, namespace, "ep"), "GPUCompatible").get("reason") == "ProbePending"
        and b,
        what="ProbePending",
    )
    assert condition(body, "Progressing")["reason"] == "ProbingGPU"
    core = client.CoreV1Api(api)
    # the probe runs in the operator's own namespace (its Lease namespace here), not the endpoint's
    probes = "app.kubernetes.io/component=gpu-probe,kubewhisper.dev/gpu-probe-node=bare-1"
    assert not core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=gpu-probe").items
    pod = wait_for(
        lambda: [p for p in core.list_namespaced_pod(OPERATOR_NS, label_selector=probes).items if p.spec.node_name],
        what="probe pod bound",
    )[0]
    job_name = pod.metadata.labels["job-name"]
    assert pod.spec.node_name == "bare-1"
    assert pod.spec.containers[0].command == ["python", "-m", "whisper_inference.gpu_probe"]
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    # No kubelet and no GPU here: simulate what the kubelet reports once gpu_probe has written its answer to
    # /dev/termination-log (the only faked part of this test).
    answer = {"major": 8, "minor": 0, "product": "NVIDIA A100-SXM4-80GB", "memoryMiB": 81920}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    core.patch_namespaced_pod_status(
        pod.metadata.name,
        OPERATOR_NS,
        {
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": "probe",
                        "ready": False,
                        "restartCount": 0,
                        "image": pod.spec.containers[0].image,
                        "imageID": "",
                        "state": {
                            "terminated": {
                                "exitCode": 0,
                                "reason": "Completed",
                                "message": json.dumps(answer),
                                "startedAt": now,
                                "finishedAt": now,
                            }
                        },
                    }
                ],
            }
        },
    )
    dep = wait_for(lambda: deployment(api, namespace, "ep"), what="deployment after probe")
    assert env_of(dep)["DTYPE"] == "bfloat16"
    body = wait_for(
        lambda: (b := get_endpoint(api, namespace, "ep")).get("status", {}).get("profile") and b, what="profile"
    )
    assert body["status"]["profile"]["computeCapability"] == "8.0"
    assert "A100" in body["status"]["profile"]["gpuProduct"]
    assert body["status"]["profile"]["placement"] == "Pinned"  # by node name: a probed node has no GPU labels
    assert any(e.reason == "ProbedGPU" for e in client.CoreV1Api(api).list_namespaced_event(namespace).items)
    # the answer is persisted by node uid and the finished Job is deleted
    uid = core.read_node("bare-1").metadata.uid
    answers = core.read_namespaced_config_map("kubewhisper-gpu-probes", OPERATOR_NS).data
    assert json.loads(answers[uid])["major"] == 8

    def job_gone():
        try:
            client.BatchV1Api(api).read_namespaced_job(job_name, OPERATOR_NS)
            return False
        except ApiException as e:
            return e.status == 404

    wait_for(job_gone, what="the finished probe Job deleted")
