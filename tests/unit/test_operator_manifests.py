"""Pure manifests, status and probe parsing."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from whisper_operator.config import OperatorSettings
from whisper_operator.errors import SpecError
from whisper_operator.manifests import deployment, merge_affinity, service
from whisper_operator.probe import job_manifest, job_name, parse_message, read_pods
from whisper_operator.profile import Profile
from whisper_operator.spec import parse_spec
from whisper_operator.status import build_status, changed

pytestmark = pytest.mark.unit
S = OperatorSettings(termination_grace_seconds=60)
PROFILE = Profile(
    "7.5",
    "Tesla-T4",
    "half",
    "fp16",
    "TRITON_ATTN",
    False,
    "Pinned",
    ["t4"],
    pin=[{"matchExpressions": [{"key": "nvidia.com/gpu.compute.major", "operator": "In", "values": ["7"]}]}],
)
ARCH = {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}


def body(**spec):
    return {
        "apiVersion": "kubewhisper.dev/v1alpha1",
        "kind": "WhisperEndpoint",
        "metadata": {"name": "ep", "namespace": "ns", "uid": "u1", "generation": 3},
        "spec": {"model": "openai/whisper-small", **spec},
    }


def test_deployment_env_resources_probes_security():
    b = body(
        languageForce="en",
        maxAudioSeconds=600,
        windowSeconds=25,
        apiKeySecretRef={"name": "s"},
        modelCache={"claimName": "weights"},
        resources={"limits": {"memory": "16Gi"}},
        env=[{"name": "DTYPE", "value": "float32"}, {"name": "X", "value": "1"}],
    )
    d = deployment(b, parse_spec(b["spec"]), PROFILE, S)
    c = d["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["MODEL_ID"] == "openai/whisper-small" and env["SERVED_MODEL_NAME"] == "openai/whisper-small"
    assert env["DTYPE"] == "float32"  # spec.env applied last
    assert [e["name"] for e in c["env"]][-2:] == ["DTYPE", "X"]
    assert env["VLLM_ATTENTION_BACKEND"] == "TRITON_ATTN" and env["VLLM_USE_FLASHINFER"] == "0"
    # the key is a mounted file (rotation without a restart), never an env value
    assert "API_KEY" not in env and env["API_KEY_FILE"] == "/var/run/secrets/kubewhisper/api-key"
    assert env["LANGUAGE_FORCE"] == "en" and env["MAX_AUDIO_SECONDS"] == "600"
    assert env["WHISPER_WINDOW_SECONDS"] == "25" and env["HF_HOME"] == "/models" and env["PORT"] == "8080"
    assert c["resources"]["limits"] == {"memory": "16Gi", "nvidia.com/gpu": "1"}
    # memory: request = limit (the API server's rule); cpu: the default request (never BestEffort)
    assert c["resources"]["requests"] == {"cpu": "2", "nvidia.com/gpu": "1"}
    assert c["startupProbe"]["httpGet"]["path"] == "/ready"
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 1800
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready" and c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    pod = d["spec"]["template"]["spec"]
    assert (
        pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    )
    assert pod["terminationGracePeriodSeconds"] == S.termination_grace_seconds
    # the claim is at /models: no emptyDir there; tmp and the cache dir are volumes on the read-only root
    assert {v["name"] for v in pod["volumes"]} == {"dshm", "tmp", "cache", "model-cache", "api-key"}
    assert d["metadata"]["ownerReferences"][0] == {
        "apiVersion": "kubewhisper.dev/v1alpha1",
        "kind": "WhisperEndpoint",
        "name": "ep",
        "uid": "u1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [*PROFILE.pin[0]["matchExpressions"], ARCH]}]


def test_pin_is_anded_into_every_user_term():
    user = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                ]
            }
        }
    }
    merged = merge_affinity(user, PROFILE.pin)
    terms = merged["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert all(len(t["matchExpressions"]) == 2 for t in terms)
    assert (
        len(
            user["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
                "matchExpressions"
            ]
        )
        == 1
    )  # input untouched


def test_service():
    b = body(service={"type": "NodePort", "port": 8000})
    s = service(b, parse_spec(b["spec"]))
    assert s["spec"]["type"] == "NodePort" and s["spec"]["ports"][0]["port"] == 8000
    assert s["spec"]["ports"][0]["targetPort"] == "http"


def _status(b, **kw):
    args = {"profile": None, "error": None, "probe_pending": None, "deploy": None, "url": "u", "selector": "s"}
    args.update(kw)
    return build_status(b, parse_spec(b["spec"]), **args)


def cond(st, t):
    return next(c for c in st["conditions"] if c["type"] == t)


def test_status_conditions():
    b = body(replicas=2)
    st = _status(b, error=SpecError("UnsupportedDtype", "bf16 needs 8.0"))
    assert cond(st, "Degraded")["status"] == "True" and cond(st, "Degraded")["reason"] == "UnsupportedDtype"
    assert cond(st, "GPUCompatible")["status"] == "False" and cond(st, "Ready")["status"] == "False"
    st = _status(b, probe_pending=["n1"])
    assert cond(st, "GPUCompatible")["status"] == "Unknown" and cond(st, "Progressing")["reason"] == "ProbingGPU"
    # an empty pool with a declared class: Progressing says why the pods are Pending, not Degraded
    declared = Profile("9.0", "H100", "bfloat16", "auto", "FLASH_ATTN", False, "Declared", [])
    st = _status(b, profile=declared, deploy={"metadata": {}, "status": {}})
    assert cond(st, "Progressing")["reason"] == "WaitingForGPUNodes" and cond(st, "Degraded")["status"] == "False"
    assert cond(st, "GPUCompatible")["reason"] == "ClassDeclared"
    dep = {
        "metadata": {"generation": 2},
        "status": {
            "observedGeneration": 2,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
        },
    }
    st = _status(b, profile=PROFILE, deploy=dep)
    assert cond(st, "Ready")["status"] == "True" and cond(st, "Progressing")["status"] == "False"
    assert st["profile"]["dtype"] == "half" and "pin" not in st["profile"]
    assert st["observedGeneration"] == 3 and st["readyReplicas"] == 2
    # unchanged inputs -> identical status (lastTransitionTime kept) -> no write
    b["status"] = st
    assert not changed(st, _status(b, profile=PROFILE, deploy=dep))
    dep["status"]["readyReplicas"] = 1
    again = _status(b, profile=PROFILE, deploy=dep)
    assert changed(st, again) and cond(again, "Ready")["status"] == "False"


def test_probe_job_and_answers():
    j = job_manifest("Node_A.example", "uid-1", "kubewhisper-system", "img:1", 300)
    assert j["metadata"]["name"] == job_name("Node_A.example", "uid-1") and len(j["metadata"]["name"]) <= 63
    assert j["metadata"]["namespace"] == "kubewhisper-system" and j["spec"]["activeDeadlineSeconds"] == 300
    # a replaced node (same name, new uid) gets a Job of its own
    assert job_name("Node_A.example", "uid-2") != job_name("Node_A.example", "uid-1")
    c = j["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python", "-m", "whisper_inference.gpu_probe"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    ans = {"major": 9, "minor": 0, "product": "NVIDIA H100 80GB HBM3", "memoryMiB": 81559}
    assert parse_message(json.dumps(ans)) == ans
    assert parse_message('{"error": "NVML not found"}') == {"error": "NVML not found"}
    assert "error" in parse_message("garbage")
    assert parse_message("") is None
    pod = {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": json.dumps(ans)}}}]}}
    assert read_pods([pod]) == ans
    assert read_pods([{"status": {"containerStatuses": [{"state": {"running": {}}}]}}]) is None


def test_settings_validated(monkeypatch):
    import os

    for key in [k for k in os.environ if k.startswith("KUBEWHISPER_")]:
        monkeypatch.delenv(key)
    assert OperatorSettings(_env_file=None).resync_seconds == 30
    with pytest.raises(ValidationError):
        OperatorSettings(resync_seconds=0)
    with pytest.raises(ValidationError):
        OperatorSettings(mixed_pool_policy="Random")
    with pytest.raises(ValueError):
        OperatorSettings(webhook_enabled=True).check()


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("KUBEWHISPER_RESYNC_SECONDS", "nope")
    with pytest.raises(Exception) as err:
        OperatorSettings()
    assert "resync_seconds" in str(err.value)
