"""CPU endpoints (gpu.count 0), the engine choice, the model image's init container and the read-only root (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from whisper_inference.cpu import vllm_thread_env
from whisper_operator.config import OperatorSettings
from whisper_operator.cpu_profile import compute_cpu_profile, cpu_nodes
from whisper_operator.errors import SpecError
from whisper_operator.manifests import deployment
from whisper_operator.profile import Profile, check_spec
from whisper_operator.spec import parse_spec
from whisper_operator.status import build_status
from whisper_operator.webhook import check

pytestmark = pytest.mark.unit
S = OperatorSettings(_env_file=None)
G = "nvidia.com/gpu"
ARCH = {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
AVOID_GPU = {"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"}


def node(name, labels=None, gpus=0, taints=None):
    return {
        "metadata": {"name": name, "uid": name, "labels": {"kubernetes.io/arch": "amd64", **(labels or {})}},
        "spec": {"taints": taints or []},
        "status": {"allocatable": {G: str(gpus)} if gpus else {}},
    }


CPU_NODE = node("cpu-1", {"pool": "cpu"})
GPU_NODE = node("t4-1", {"nvidia.com/gpu.present": "true", f"{G}.product": "Tesla-T4"}, gpus=1)
TAINTED = node("cpu-tainted", {"pool": "cpu"}, taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
NODES = [CPU_NODE, GPU_NODE, TAINTED]


def body(**spec):
    return {
        "apiVersion": "kubewhisper.dev/v1alpha1",
        "kind": "WhisperEndpoint",
        "metadata": {"name": "whisper-cpu", "namespace": "default", "uid": "u1", "generation": 1},
        "spec": {"model": "/models/whisper-base", "gpu": {"count": 0}, **spec},
    }


def pod_of(b, nodes=NODES, settings=S):
    spec = parse_spec(b["spec"])
    profile = compute_cpu_profile(spec, nodes) if spec.on_cpu else None
    assert profile is not None
    return deployment(b, spec, profile, settings)["spec"]["template"]["spec"]


def env(container):
    return {e["name"]: e.get("value") for e in container["env"]}


def test_cpu_pod_has_no_gpu_cpu_image_float32_limits_and_avoids_gpu_nodes():
    pod = pod_of(body())
    c = pod["containers"][0]
    assert G not in c["resources"]["requests"] and G not in c["resources"]["limits"]
    # defaults when the spec sets none (base: 3Gi), and limits equal to them: the CPU limit sizes the threads
    assert c["resources"] == {"requests": {"cpu": "2", "memory": "3Gi"}, "limits": {"cpu": "2", "memory": "3Gi"}}
    assert "tolerations" not in pod  # no nvidia.com/gpu toleration: tainted GPU nodes stay out of reach
    assert c["image"] == "ghcr.io/kubewhisper/kubewhisper-inference:0.1.0-cpu"
    e = env(c)
    assert e["DTYPE"] == "float32" and e["ENGINE"] == "ctranslate2"
    assert not any(k.startswith("VLLM_") for k in e), "no GPU knobs on a CPU pod"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [AVOID_GPU, ARCH]}]


def test_cpu_image_comes_from_the_operator_setting_and_spec_image_wins():
    settings = OperatorSettings(_env_file=None, default_cpu_image="registry.local/whisper:cpu")
    assert pod_of(body(), settings=settings)["containers"][0]["image"] == "registry.local/whisper:cpu"
    assert pod_of(body(image="mine:1"), settings=settings)["containers"][0]["image"] == "mine:1"


def test_cpu_resources_from_the_spec_and_a_request_only_gets_a_limit():
    c = pod_of(body(resources={"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "3Gi"}}))[
        "containers"
    ][0]
    assert c["resources"] == {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "3Gi"}}
    c = pod_of(body(resources={"requests": {"cpu": "1"}}))["containers"][0]
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "3Gi"}


def test_user_node_selector_affinity_and_tolerations_are_kept():
    user_aff = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
            }
        }
    }
    tol = [{"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]
    pod = pod_of(body(nodeSelector={"pool": "cpu"}, affinity=user_aff, tolerations=tol))
    assert pod["nodeSelector"] == {"pool": "cpu"} and pod["tolerations"] == tol
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}, AVOID_GPU, ARCH]}]


def test_cpu_candidates_skip_gpu_nodes_and_untolerated_taints():
    spec = parse_spec(body()["spec"])
    assert cpu_nodes(spec, NODES) == ["cpu-1"]
    tolerant = parse_spec(body(tolerations=[{"key": "dedicated", "operator": "Exists"}])["spec"])
    assert cpu_nodes(tolerant, NODES) == ["cpu-1", "cpu-tainted"]
    p = compute_cpu_profile(spec, NODES)
    assert p.on_cpu and p.placement == "CPU" and p.dtype == "float32" and p.engine == "ctranslate2"
    assert p.accelerator == "cpu" and "on_cpu" not in p.status() and p.status()["engine"] == "ctranslate2"


@pytest.mark.parametrize(
    "extra,what",
    [
        ({"gpu": {"count": 0, "product": "T4"}}, "gpu.product"),
        ({"gpu": {"count": 0, "minComputeCapability": "8.0"}}, "gpu.minComputeCapability"),
        ({"dtype": "bfloat16"}, "dtype bfloat16"),
        ({"kvCacheDtype": "fp8"}, "kvCacheDtype fp8"),
        ({"attentionBackend": "FLASH_ATTN"}, "attentionBackend FLASH_ATTN"),
    ],
)
def test_gpu_only_settings_on_a_cpu_endpoint_are_refused(extra, what):
    b = body(**extra)
    with pytest.raises(SpecError) as e:
        compute_cpu_profile(parse_spec(b["spec"]), NODES)
    assert e.value.reason == "UnsupportedOnCPU" and what in e.value.message
    # the webhook refuses the same spec, naming the reason
    problem = check(b["spec"], NODES, S)
    assert problem is not None and problem.startswith("UnsupportedOnCPU")


def test_webhook_admits_a_valid_cpu_endpoint():
    assert check(body()["spec"], NODES, S) is None


@pytest.mark.parametrize(
    "gpus,engine,want",
    [(0, "auto", "ctranslate2"), (1, "auto", "vllm"), (0, "vllm", "vllm"), (0, "ctranslate2", "ctranslate2")],
)
def test_engine_choice(gpus, engine, want):
    spec = parse_spec({"model": "m", "gpu": {"count": gpus}, "engine": engine})
    assert spec.engine_name == want


def test_ctranslate2_on_a_gpu_endpoint_is_refused():
    spec = parse_spec({"model": "m", "engine": "ctranslate2"})
    with pytest.raises(SpecError) as e:
        check_spec(spec)
    assert e.value.reason == "UnsupportedEngine"


def test_vllm_on_a_cpu_endpoint_gets_engine_vllm_and_float32():
    e = env(pod_of(body(engine="vllm"))["containers"][0])
    assert e["ENGINE"] == "vllm" and e["DTYPE"] == "float32"


def test_model_image_init_container_copies_into_an_emptydir_at_models():
    pod = pod_of(body(modelImage="ghcr.io/kubewhisper/kubewhisper-model-whisper-base:0.1.0", imagePullPolicy="Never"))
    (init,) = pod["initContainers"]
    assert init["image"] == "ghcr.io/kubewhisper/kubewhisper-model-whisper-base:0.1.0"
    assert init["imagePullPolicy"] == "Never"  # the spec's policy, as for the server image: nothing is pulled
    assert init["command"] == ["cp", "-R", "/model/.", "/models/"]
    assert init["volumeMounts"] == [{"name": "models", "mountPath": "/models"}]
    assert init["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"} and init["resources"]["limits"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "models", "emptyDir": {}} in pod["volumes"]
    assert {"name": "models", "mountPath": "/models"} in pod["containers"][0]["volumeMounts"]


def test_model_image_copies_into_a_model_cache_mounted_at_models():
    pod = pod_of(body(modelImage="m:1", modelCache={"claimName": "weights"}))
    assert pod["initContainers"][0]["volumeMounts"] == [{"name": "model-cache", "mountPath": "/models"}]
    assert not any(v["name"] == "models" for v in pod["volumes"])


def test_model_image_with_a_read_only_cache_at_models_is_invalid():
    with pytest.raises(SpecError) as e:
        parse_spec(body(modelImage="m:1", modelCache={"claimName": "w", "readOnly": True})["spec"])
    assert e.value.reason == "InvalidSpec" and "read-only" in e.value.message


def test_no_model_image_no_init_container():
    assert "initContainers" not in pod_of(body())


def test_read_only_root_with_writable_volumes_and_explicit_ids():
    pod = pod_of(body())
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert {"/tmp", "/home/whisper/.cache", "/models", "/dev/shm"} <= set(mounts)
    vols = {v["name"]: v for v in pod["volumes"]}
    assert all("emptyDir" in vols[mounts[p]] for p in ("/tmp", "/home/whisper/.cache", "/models"))
    # kubelet 1.20 drops a numeric USER's group: the pod sets the group itself
    sc = pod["securityContext"]
    assert sc["runAsUser"] == 10001 and sc["runAsGroup"] == 10001 and sc["fsGroup"] == 10001


def _status(b, profile, deploy):
    return build_status(
        b, parse_spec(b["spec"]), profile=profile, error=None, probe_pending=None, deploy=deploy, url="u", selector="s"
    )


def cond(st, t):
    return next(c for c in st["conditions"] if c["type"] == t)


def test_status_of_a_cpu_endpoint_says_cpu():
    b = body()
    p = compute_cpu_profile(parse_spec(b["spec"]), NODES)
    done = {
        "metadata": {"generation": 1},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
    }
    done["status"]["readyReplicas"] = 1
    st = _status(b, p, done)
    assert st["accelerator"] == "cpu" and "gpuClass" not in st and st["profile"]["placement"] == "CPU"
    assert cond(st, "GPUCompatible")["reason"] == "NoGPURequested"
    assert cond(st, "Ready")["status"] == "True" and cond(st, "Progressing")["reason"] == "RolloutComplete"
    # no CPU node yet: Pending pods, said so
    empty = compute_cpu_profile(parse_spec(b["spec"]), [GPU_NODE])
    st = _status(b, empty, {"metadata": {}, "status": {}})
    assert cond(st, "Progressing")["reason"] == "WaitingForCPUNodes" and cond(st, "Degraded")["status"] == "False"


def test_status_of_a_gpu_endpoint_names_product_and_capability():
    b = body(gpu={"count": 1})
    p = Profile("7.5", "Tesla-T4", "half", "fp16", "TRITON_ATTN", False, "Pinned", ["t4-1"])
    assert _status(b, p, None)["accelerator"] == "Tesla-T4 (CC 7.5)"


@pytest.mark.parametrize(
    "threads,allowed,environ,want",
    [
        (2, 64, {}, {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "2"}),  # limit 2 on a 64-core node
        (2, 2, {}, {}),  # the pod owns its cores: vLLM's own binding
        (None, 8, {}, {}),  # no limit
        (2, 64, {"OMP_NUM_THREADS": "4"}, {}),  # the user's setting wins
        (2, 64, {"VLLM_CPU_OMP_THREADS_BIND": "0-1"}, {}),
    ],
)
def test_vllm_cpu_threads_follow_the_cpu_limit(threads, allowed, environ, want):
    assert vllm_thread_env(threads, allowed, environ) == want


def test_the_cpu_example_renders_the_shared_contract():
    """operator/examples/endpoint-cpu.yaml: the names the node, image and demo helpers rely on."""
    ex = yaml.safe_load((Path(__file__).resolve().parents[2] / "operator/examples/endpoint-cpu.yaml").read_text())
    assert (ex["metadata"]["name"], ex["metadata"]["namespace"]) == ("whisper-cpu", "default")
    b = {**ex, "metadata": {**ex["metadata"], "uid": "u1", "generation": 1}}
    pod = pod_of(b, nodes=[CPU_NODE])
    c, (init,) = pod["containers"][0], pod["initContainers"]
    e = env(c)
    assert e["MODEL_ID"] == "/models/whisper-base" and e["SERVED_MODEL_NAME"] == "whisper-base"
    assert e["ENGINE"] == "ctranslate2" and e["DTYPE"] == "float32"
    assert init["image"] == "ghcr.io/kubewhisper/kubewhisper-model-whisper-base:0.1.0"
    assert init["imagePullPolicy"] == c["imagePullPolicy"] == "IfNotPresent"
    assert c["resources"] == {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "3Gi"}}
