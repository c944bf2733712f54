"""Issue 9's defects in the operator's pure layer: empty/autoscaled pools, GPU taints, sticky class, rollouts on full
pools, whole-token products, hardware guards, pod hardening, probe retries, leadership that lapses on a hung renew.
(The same behaviours against the real control plane: tests/cluster/test_operator_real_clusters.py.)"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from whisper_operator.config import OperatorSettings
from whisper_operator.errors import SpecError
from whisper_operator.manifests import deployment
from whisper_operator.nodes import candidate_nodes
from whisper_operator.probe import due, failed_answer
from whisper_operator.profile import StickyClass, compute_profile, product_matches
from whisper_operator.spec import parse_spec

pytestmark = pytest.mark.unit
G = "nvidia.com/gpu"
S = OperatorSettings(_env_file=None)


def node(name, labels=None, gpus=1, taints=None, unschedulable=False):
    return {
        "metadata": {"name": name, "uid": name + "-uid", "labels": labels or {}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {"allocatable": {G: str(gpus)}},
    }


def gfd(product, major, minor):
    return {f"{G}.product": product, f"{G}.compute.major": str(major), f"{G}.compute.minor": str(minor)}


T4 = node("t4", {"pool": "mixed", **gfd("Tesla-T4", 7, 5)}, gpus=2)
H100 = node("h100", {"pool": "mixed", **gfd("NVIDIA-H100-80GB-HBM3", 9, 0)}, gpus=4)
A100 = node("a100", {"pool": "mixed", **gfd("NVIDIA-A100-SXM4-80GB", 8, 0)})
P100 = node("p100", {"pool": "old", **gfd("Tesla-P100-PCIE-16GB", 6, 0)})


def decide(raw, nodes, previous=None, now=0.0, reselect=900.0):
    spec = parse_spec({"model": "openai/whisper-large-v3", **raw})
    return compute_profile(spec, candidate_nodes(spec, nodes), "Pin", previous, now, reselect)


def template(raw, profile):
    b = {"metadata": {"name": "ep", "namespace": "ns", "uid": "u"}, "spec": {"model": "m", **raw}}
    return deployment(b, parse_spec(b["spec"]), profile, S)


# ---- 1: empty and autoscaled pools ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw,cc,dtype",
    [
        ({"gpu": {"product": "H100"}}, "9.0", "bfloat16"),
        ({"gpu": {"minComputeCapability": "8.0"}}, "8.0", "bfloat16"),
        ({"dtype": "half"}, "7.0", "half"),
        ({"dtype": "bfloat16"}, "8.0", "bfloat16"),
    ],
)
def test_an_empty_pool_with_a_declared_class_gets_a_profile(raw, cc, dtype):
    p = decide({"nodeSelector": {"pool": "scaled-to-zero"}, **raw}, [T4, H100])
    assert (p.placement, p.computeCapability, p.dtype, p.nodes) == ("Declared", cc, dtype, [])
    assert p.pin  # the Pending pods still ask for the right class, so the autoscaler adds the right node


def test_an_empty_pool_without_a_declared_class_is_degraded_with_a_code():
    with pytest.raises(SpecError) as e:
        decide({"nodeSelector": {"pool": "scaled-to-zero"}}, [T4, H100])
    assert e.value.reason == "NoCandidateNodes"


# ---- 2: GPU taints ------------------------------------------------------------------------------------------------
def test_a_gpu_taint_is_tolerated_and_the_toleration_is_on_the_template():
    gke = node("gke", gfd("NVIDIA-L4", 8, 9), taints=[{"key": G, "value": "present", "effect": "NoSchedule"}])
    p = decide({}, [gke])
    assert p.nodes == ["gke"]
    tolerations = template({}, p)["spec"]["template"]["spec"]["tolerations"]
    assert {"key": G, "operator": "Exists"} in tolerations


# ---- 3: a sticky class ------------------------------------------------------------------------------------------
def test_cordoning_the_chosen_class_does_not_flip_the_profile():
    first = decide({}, [T4, H100])
    assert first.computeCapability == "9.0" and first.sticky is not None
    cordoned = node("h100", H100["metadata"]["labels"], gpus=4, unschedulable=True)
    during = decide({}, [T4, cordoned], previous=first.sticky, now=100.0)
    assert (during.computeCapability, during.dtype, during.pin) == ("9.0", "bfloat16", first.pin)
    assert during.nodes == [] and during.sticky.no_capacity_since == 100.0
    after = decide({}, [T4, H100], previous=during.sticky, now=200.0)
    assert after.computeCapability == "9.0" and after.sticky.no_capacity_since is None
    assert template({}, after)["spec"]["template"] == template({}, first)["spec"]["template"]


def test_the_class_changes_after_the_reselect_time_or_on_a_spec_change():
    first = decide({}, [T4, H100])
    gone = decide({}, [T4], previous=first.sticky, now=0.0)
    later = decide({}, [T4], previous=gone.sticky, now=901.0)
    assert gone.computeCapability == "9.0" and later.computeCapability == "7.5"
    changed = decide({"gpu": {"mixedPoolPolicy": "SafestCommon"}}, [T4, H100], previous=first.sticky)
    assert changed.computeCapability == "7.5"


def test_a_single_class_pool_is_pinned_so_a_later_t4_never_gets_bf16_pods():
    p = decide({"nodeSelector": {"pool": "mixed"}}, [H100])
    terms = template({}, p)["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    exprs = {e["key"]: e["values"] for e in terms[0]["matchExpressions"]}
    assert exprs[f"{G}.compute.major"] == ["9"] and exprs[f"{G}.compute.minor"] == ["0"]


def test_sticky_class_round_trips_through_status():
    sticky = StickyClass((9, 0), "abc", 12.5)
    assert StickyClass.from_status({"gpuClass": sticky.status()}) == sticky


# ---- 4: rollouts that cannot deadlock on a full pool --------------------------------------------------------------
def test_default_rollout_needs_no_spare_gpu_and_outlives_the_startup_budget():
    d = template({}, decide({}, [H100]))["spec"]
    assert d["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert d["progressDeadlineSeconds"] > S.startup_probe_seconds
    assert template({"rollout": {"strategy": "Recreate"}}, decide({}, [H100]))["spec"]["strategy"] == {
        "type": "Recreate"
    }


# ---- 9: whole-token product match -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "want,product,match",
    [
        ("A10", "NVIDIA-A100-SXM4-80GB", False),
        ("L4", "NVIDIA-L40S", False),
        ("H20", "NVIDIA-H200", False),
        ("A10", "NVIDIA-A10", True),
        ("h100", "NVIDIA-H100-80GB-HBM3", True),
        ("H100 80GB", "NVIDIA H100 80GB HBM3", True),
    ],
)
def test_product_matches_whole_tokens(want, product, match):
    assert product_matches(want, product) is match


def test_product_a10_does_not_select_the_a100():
    a10 = node("a10", {"pool": "mixed", f"{G}.product": "NVIDIA-A10"})
    assert decide({"gpu": {"product": "A10"}}, [A100, a10]).nodes == ["a10"]


# ---- 10: hardware guards ----------------------------------------------------------------------------------------
def test_pascal_is_below_vllms_floor():
    with pytest.raises(SpecError) as e:
        decide({"nodeSelector": {"pool": "old"}}, [P100])
    assert e.value.reason == "BelowVLLMMinComputeCapability"


def test_gpu_count_above_one_is_refused_with_a_code():
    with pytest.raises(SpecError) as e:
        decide({"gpu": {"count": 2}}, [H100])
    assert e.value.reason == "MultiGPUUnsupported"


def test_arm64_nodes_are_not_candidates_for_an_amd64_image_and_pods_are_pinned_to_amd64():
    gh200 = node("gh200", {"kubernetes.io/arch": "arm64", **gfd("NVIDIA-GH200-480GB", 9, 0)})
    assert decide({}, [gh200, H100]).nodes == ["h100"]
    assert decide({"architectures": ["arm64"]}, [gh200, H100]).nodes == ["gh200"]
    terms = template({}, decide({}, [H100]))["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert all(
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]} in t["matchExpressions"] for t in terms
    )


def test_mig_slices_and_time_sliced_gpus_are_excluded():
    mig = node("mig", gfd("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", 8, 0))
    shared = node("shared", {**gfd("NVIDIA-L4-SHARED", 8, 9)})
    sliced = node("sliced", {**gfd("NVIDIA-L4", 8, 9), f"{G}.replicas": "4"})
    assert decide({}, [mig, shared, sliced, T4]).nodes == ["t4"]


# ---- 13: pods ---------------------------------------------------------------------------------------------------
def test_pod_template_hardening():
    raw = {"apiKeySecretRef": {"name": "key"}, "terminationGracePeriodSeconds": 900, "maxAudioSeconds": 7200}
    pod = template(raw, decide({}, [H100]))["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["startupProbe"]["httpGet"]["path"] == "/ready"
    # an unknown model size is sized as the largest Whisper
    assert c["resources"]["requests"]["cpu"] == "2" and c["resources"]["requests"]["memory"] == "12Gi"
    assert c["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] == 900
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["API_KEY_FILE"].startswith("/var/run/secrets/") and "API_KEY" not in env
    assert int(env["GRACE_PERIOD_SECONDS"]) < 900
    secret = next(v for v in pod["volumes"] if v["name"] == "api-key")["secret"]
    assert secret["secretName"] == "key" and secret["items"] == [{"key": "api-key", "path": "api-key"}]
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


def test_model_size_decides_the_default_memory_request():
    def memory(model):
        b = {"metadata": {"name": "e", "namespace": "n", "uid": "u"}, "spec": {"model": model}}
        return deployment(b, parse_spec(b["spec"]), decide({}, [H100]), S)["spec"]["template"]["spec"]["containers"][0][
            "resources"
        ]["requests"]["memory"]

    assert memory("openai/whisper-large-v3") == "12Gi" and memory("openai/whisper-tiny.en") == "2Gi"


# ---- 5: probe failures are retried with backoff, never final ----------------------------------------------------
def test_probe_failures_back_off_and_are_retried():
    first = failed_answer(None, "timeout", now=1000.0, base_delay=60.0)
    second = failed_answer(first, "timeout", now=1100.0, base_delay=60.0)
    assert (first["attempts"], first["retryAt"]) == (1, 1060.0)
    assert (second["attempts"], second["retryAt"]) == (2, 1220.0)
    assert not due(first, 1059.0) and due(first, 1060.0)
    assert failed_answer({"attempts": 30, "error": "x"}, "x", 0.0, 60.0)["retryAt"] == 3600.0
    assert not due({"major": 9, "minor": 0}, 1e12)


# ---- 12: a hung Lease renewal drops leadership ------------------------------------------------------------------
def test_leadership_lapses_when_a_renew_hangs():
    """A real TCP server that accepts and never answers: the fault a hung API connection is."""
    from kubernetes import client

    from whisper_operator.kube import TimeoutApiClient
    from whisper_operator.leader import LeaseElector

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{listener.getsockname()[1]}"
    now = [0.0]
    elector = LeaseElector(
        client.CoordinationV1Api(TimeoutApiClient(cfg, 60.0)), "l", "ns", "me", duration=1.5, clock=lambda: now[0]
    )
    elector._set(True, "held", started=0.0)  # as after a successful renewal at t=0
    assert elector.is_leader
    done = threading.Event()
    result = []

    def renew():
        result.append(elector.try_acquire_or_renew())
        done.set()

    threading.Thread(target=renew, daemon=True).start()
    # the per-request timeout (a third of the duration) ends the hung renewal instead of blocking forever
    assert done.wait(30), "a renewal against a hung API server never returned"
    assert result == [False] and not elector.is_leader
    listener.close()
    # and without any call at all, leadership lapses once the last renewal is older than the renew deadline
    elector._set(True, "held", started=0.0)
    now[0] = 0.9
    assert elector.is_leader
    now[0] = 1.01
    assert not elector.is_leader


# ---- 6: watches filtered by the API server, lists paginated -----------------------------------------------------
def test_kopf_watches_only_the_operators_children_server_side():
    import kopf
    from kopf._cogs.structs import references

    from whisper_operator.kopf_config import configure_kopf

    settings = kopf.OperatorSettings()
    configure_kopf(settings, S)
    managed = ["app.kubernetes.io/managed-by=kubewhisper-operator"]
    # these selectors go into the list and watch requests' labelSelector (kopf._cogs.clients.watching)
    assert list(settings.watching.label_selectors.collect(references.Resource("apps", "v1", "deployments"))) == managed
    assert list(settings.watching.label_selectors.collect(references.Resource("", "v1", "services"))) == managed
    assert settings.watching.chunk_size and settings.networking.request_timeout == S.request_timeout_seconds


def test_the_operator_has_no_per_reconcile_node_list_and_no_cluster_wide_pod_watch():
    """Nodes come from one kopf index; probe pods are read in the operator's namespace only. Checked in a fresh
    interpreter: importing the handlers here would fix their settings for the cluster tier's operator."""
    script = (
        "import kopf, whisper_operator.handlers\n"
        "from kopf._cogs.structs.references import Resource\n"
        "r = kopf.get_default_registry()\n"
        "nodes, pods = Resource('', 'v1', 'nodes'), Resource('', 'v1', 'pods')\n"
        "print(any(h.selector.check(nodes) for h in r._indexing.get_all_handlers()),"
        " any(h.selector.check(pods) for h in r._watching.get_all_handlers()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["True", "False"], out.stderr


def test_a_declared_class_stays_declared_across_reconciles():
    first = decide({"nodeSelector": {"pool": "zero"}, "gpu": {"product": "H100"}}, [T4])
    again = decide({"nodeSelector": {"pool": "zero"}, "gpu": {"product": "H100"}}, [T4], previous=first.sticky)
    assert (first.placement, again.placement, again.pin) == ("Declared", "Declared", first.pin)


def test_gpus_too_small_for_the_model_are_excluded():
    small = node("small", {**gfd("NVIDIA-A2", 8, 6), f"{G}.memory": "4096"})
    assert decide({}, [small, H100]).nodes == ["h100"]  # large-v3 needs more than 4 GiB
    spec = parse_spec({"model": "openai/whisper-tiny"})
    assert [n.name for n in candidate_nodes(spec, [small])] == ["small"]
    assert compute_profile(spec, candidate_nodes(spec, [small])).nodes == ["small"]
