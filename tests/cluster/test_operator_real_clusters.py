"""Issue 9 on the real control plane (fake GPU nodes, the real scheduler and controllers, the operator under kopf):
empty and autoscaled pools, GKE's GPU taint, a sticky class under cordons, rollouts on a full pool, whole-token
products, scaling while Degraded, the pod template and PDB, and Events from the periodic resync.

There is no kubelet: where a test needs a running pod it patches the pod's status (mark_pods_ready), and where a
pod must finish terminating it deletes it with grace 0, as the kubelet would once the container exited. Those are
the only simulated parts.
"""

from __future__ import annotations

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
    fake_node,
    get_endpoint,
    mark_pods_ready,
    patch_spec,
    wait_for,
)

pytestmark = pytest.mark.cluster
MODEL = "openai/whisper-large-v3"
GPU = "nvidia.com/gpu"


def _pods(api, namespace: str, name: str) -> list:
    return client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"kubewhisper.dev/endpoint={name}").items


def _bound(api, namespace: str, name: str) -> list[str]:
    return sorted(p.spec.node_name for p in _pods(api, namespace, name) if p.spec.node_name)


def _events(api, namespace: str, name: str) -> list:
    return [
        e
        for e in client.CoreV1Api(api).list_namespaced_event(namespace).items
        if e.involved_object.name == name and e.involved_object.kind == "WhisperEndpoint"
    ]


# ---- 1 ----------------------------------------------------------------------------------------------------------
def test_an_empty_autoscaled_pool_gets_its_deployment_and_pending_pods(api, operator, namespace):
    create_endpoint(
        api, namespace, "ep", {"model": MODEL, "gpu": {"product": "H100"}, "nodeSelector": {"pool": "zero"}}
    )
    dep = wait_for(lambda: deployment(api, namespace, "ep"), what="a Deployment for an empty pool")
    assert env_of(dep)["DTYPE"] == "bfloat16"
    wait_for(lambda: _pods(api, namespace, "ep"), what="a Pending pod (what makes an autoscaler add a node)")
    body = wait_for(
        lambda: condition(b := get_endpoint(api, namespace, "ep"), "Progressing").get("reason") == "WaitingForGPUNodes"
        and b,
        what="Progressing=WaitingForGPUNodes",
    )
    assert condition(body, "Degraded")["status"] == "False"
    assert body["status"]["profile"]["placement"] == "Declared"
    # the autoscaler adds an H100 node: the Pending pod lands there
    core = client.CoreV1Api(api)
    core.create_node(
        fake_node(
            "zero-h100",
            "zero",
            {f"{GPU}.product": "NVIDIA-H100-80GB-HBM3", f"{GPU}.compute.major": "9", f"{GPU}.compute.minor": "0"},
            gpus=1,
        )
    )
    try:
        assert wait_for(lambda: _bound(api, namespace, "ep"), what="pod bound to the new node") == ["zero-h100"]
    finally:
        core.delete_node("zero-h100")


# ---- 2 ----------------------------------------------------------------------------------------------------------
def test_a_gke_tainted_gpu_node_is_used(api, operator, namespace):
    create_endpoint(api, namespace, "ep", {"model": MODEL, "nodeSelector": {"pool": "gke"}})
    dep = wait_for(lambda: deployment(api, namespace, "ep"), what="a Deployment on the tainted GPU pool")
    assert any(t.key == GPU and t.operator == "Exists" for t in dep.spec.template.spec.tolerations)
    assert wait_for(lambda: _bound(api, namespace, "ep"), what="pod bound by the real scheduler") == ["gke-l4-1"]


# ---- 3 ----------------------------------------------------------------------------------------------------------
def test_cordoning_the_chosen_class_does_not_reload_the_model(api, operator, namespace):
    core = client.CoreV1Api(api)
    create_endpoint(api, namespace, "ep", {"model": MODEL, "nodeSelector": {"pool": "mixed"}})
    dep = wait_for(lambda: deployment(api, namespace, "ep"), what="deployment")
    assert env_of(dep)["DTYPE"] == "bfloat16"
    wait_for(lambda: (get_endpoint(api, namespace, "ep").get("status") or {}).get("profile"), what="profile")
    generation = dep.metadata.generation
    core.patch_node("mixed-h100", {"spec": {"unschedulable": True}})
    try:
        # a reconcile has seen the cordon once the profile's schedulable nodes no longer list the H100
        body = wait_for(
            lambda: "mixed-h100" not in (b := get_endpoint(api, namespace, "ep"))["status"]["profile"]["nodes"] and b,
            what="the cordon observed",
        )
        assert body["status"]["profile"]["dtype"] == "bfloat16"
        assert body["status"]["gpuClass"]["computeCapability"] == "9.0"
        assert body["status"]["gpuClass"].get("noCapacitySince") is not None
        dep = deployment(api, namespace, "ep")
        assert dep.metadata.generation == generation and env_of(dep)["DTYPE"] == "bfloat16"
    finally:
        core.patch_node("mixed-h100", {"spec": {"unschedulable": False}})
    wait_for(
        lambda: get_endpoint(api, namespace, "ep")["status"]["gpuClass"].get("noCapacitySince") is None,
        what="capacity back",
    )
    assert deployment(api, namespace, "ep").metadata.generation == generation


# ---- 4 ----------------------------------------------------------------------------------------------------------
def test_a_rollout_on_a_full_pool_completes(api, operator, namespace):
    """One GPU in the pool, one replica: the new pod can only start where the old one was."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    create_endpoint(api, namespace, "ep", {"model": MODEL, "nodeSelector": {"pool": "full"}})
    wait_for(lambda: _bound(api, namespace, "ep") == ["full-1"], what="first pod bound")
    mark_pods_ready(api, namespace, "kubewhisper.dev/endpoint=ep")
    wait_for(lambda: condition(get_endpoint(api, namespace, "ep"), "Ready").get("status") == "True", what="Ready")
    old_pods = {p.metadata.name for p in _pods(api, namespace, "ep")}
    patch_spec(api, namespace, "ep", {"env": [{"name": "ROLL", "value": "1"}]})

    def old_replicaset_scaled_down():
        sets = apps.list_namespaced_replica_set(namespace, label_selector="kubewhisper.dev/endpoint=ep").items
        return len(sets) == 2 and any(rs.spec.replicas == 0 for rs in sets)

    wait_for(old_replicaset_scaled_down, what="the old ReplicaSet scaled down (no surge pod waiting for a GPU)")
    for name in old_pods:  # the kubelet would finish terminating them
        try:
            core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                raise
    wait_for(
        lambda: [p for p in _pods(api, namespace, "ep") if p.metadata.name not in old_pods and p.spec.node_name],
        what="the new pod bound to the freed GPU",
    )
    mark_pods_ready(api, namespace, "kubewhisper.dev/endpoint=ep")
    wait_for(
        lambda: condition(get_endpoint(api, namespace, "ep"), "Progressing").get("reason") == "RolloutComplete",
        what="rollout complete",
    )
    dep = deployment(api, namespace, "ep")
    assert dep.spec.progress_deadline_seconds > 1800 and env_of(dep)["ROLL"] == "1"


# ---- 9 ----------------------------------------------------------------------------------------------------------
def test_product_a10_selects_the_a10_not_the_a100(api, operator, namespace):
    create_endpoint(
        api, namespace, "ep", {"model": MODEL, "gpu": {"product": "A10"}, "nodeSelector": {"pool": "ampere"}}
    )
    assert wait_for(lambda: _bound(api, namespace, "ep"), what="pod bound") == ["ampere-a10"]


# ---- 11 ---------------------------------------------------------------------------------------------------------
def test_scaling_works_while_degraded(api, operator, namespace):
    create_endpoint(api, namespace, "ep", {"model": MODEL, "nodeSelector": {"pool": "t4"}})
    wait_for(lambda: deployment(api, namespace, "ep"), what="deployment")
    patch_spec(api, namespace, "ep", {"dtype": "bfloat16"})  # cannot run on a T4: Degraded, template frozen
    wait_for(
        lambda: condition(get_endpoint(api, namespace, "ep"), "Degraded").get("reason") == "UnsupportedDtype",
        what="Degraded",
    )
    client.CustomObjectsApi(api).patch_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, PLURAL, "ep", {"spec": {"replicas": 0}}, _content_type="application/merge-patch+json"
    )
    dep = wait_for(lambda: (d := deployment(api, namespace, "ep")).spec.replicas == 0 and d, what="scaled to 0")
    assert env_of(dep)["DTYPE"] == "half"  # the frozen template


# ---- 13 (and 10: the architecture pin) --------------------------------------------------------------------------
def test_pod_template_and_disruption_budget(api, operator, namespace):
    spec = {
        "model": MODEL,
        "replicas": 2,
        "nodeSelector": {"pool": "h100"},
        "apiKeySecretRef": {"name": "key"},
        "maxAudioSeconds": 3600,
        "terminationGracePeriodSeconds": 600,
        "modelCache": {"claimName": "weights"},
    }
    create_endpoint(api, namespace, "ep", spec)
    dep = wait_for(lambda: deployment(api, namespace, "ep"), what="deployment")
    pod = dep.spec.template.spec
    c = pod.containers[0]
    assert c.startup_probe.http_get.path == "/ready"
    assert c.resources.requests["cpu"] and c.resources.requests["memory"] == "12Gi"
    pre_stop = api.sanitize_for_serialization(c.lifecycle.pre_stop)
    assert pre_stop["exec"]["command"][0] == "sleep"
    assert pod.termination_grace_period_seconds == 600
    assert env_of(dep)["API_KEY_FILE"] and "API_KEY" not in env_of(dep)
    assert pod.security_context.fs_group_change_policy == "OnRootMismatch"
    assert dep.spec.strategy.rolling_update.max_surge == 0
    terms = pod.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    assert all(any(e.key == "kubernetes.io/arch" and e.values == ["amd64"] for e in t.match_expressions) for t in terms)
    custom = client.CustomObjectsApi(api)
    pdb = wait_for(
        lambda: custom.get_namespaced_custom_object("policy", "v1beta1", namespace, "poddisruptionbudgets", "ep"),
        what="PodDisruptionBudget",
    )
    assert pdb["spec"]["maxUnavailable"] == 1 and pdb["metadata"]["ownerReferences"][0]["name"] == "ep"
    patch_spec(api, namespace, "ep", {"replicas": 1})

    def pdb_gone():
        try:
            custom.get_namespaced_custom_object("policy", "v1beta1", namespace, "poddisruptionbudgets", "ep")
            return False
        except ApiException as e:
            return e.status == 404

    wait_for(pdb_gone, what="the PDB removed at one replica (it would block every drain)")


# ---- 8 ----------------------------------------------------------------------------------------------------------
def test_node_driven_decisions_leave_events(api, operator, namespace):
    """The Deployment is created by the periodic resync after a node joins: its Event is posted, once."""
    create_endpoint(api, namespace, "ep", {"model": MODEL, "nodeSelector": {"pool": "late"}})
    wait_for(
        lambda: condition(get_endpoint(api, namespace, "ep"), "Degraded").get("reason") == "NoCandidateNodes",
        what="NoCandidateNodes",
    )
    core = client.CoreV1Api(api)
    core.create_node(
        fake_node(
            "late-1",
            "late",
            {f"{GPU}.product": "Tesla-T4", f"{GPU}.compute.major": "7", f"{GPU}.compute.minor": "5"},
            gpus=1,
        )
    )
    try:
        wait_for(lambda: deployment(api, namespace, "ep"), what="deployment after the node joined")
        created = wait_for(
            lambda: [e for e in _events(api, namespace, "ep") if e.reason == "Created" and "Deployment" in e.message],
            what="a Created Event from the resync",
        )
        assert len(created) == 1 and created[0].count == 1
        assert wait_for(
            lambda: [e for e in _events(api, namespace, "ep") if e.reason == "ProfileChosen"], what="ProfileChosen"
        )
        assert [e for e in _events(api, namespace, "ep") if e.reason == "NoCandidateNodes"]
    finally:
        core.delete_node("late-1")
