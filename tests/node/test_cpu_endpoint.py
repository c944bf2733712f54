"""The Kubernetes path for real: the chart's operator pod on a real node, the CPU example endpoint's pods started by
kubelet from the project's images, transcriptions through the Service from the host and from a pod by DNS name,
scaling, a rollout and a pod kill under load with zero failed requests, SIGTERM, a read-only root, the webhook
through its Service, helm test and helm uninstall.

The tests run in file order and build on each other (one cluster, one release, one endpoint), as a user would.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
import soundfile as sf
import soxr

from helpers import JFK, ROOT, wer

from .conftest import Kube

pytestmark = pytest.mark.cluster

NS = "kubewhisper"
RELEASE = "kubewhisper"
APP_NS = "default"
WE = "whisper-cpu"


@pytest.fixture(scope="module")
def kube(node_cluster: Kube) -> Kube:
    return node_cluster


@pytest.fixture(scope="module")
def jfk(fixtures_dir: Path) -> bytes:
    return (fixtures_dir / "jfk.wav").read_bytes()


def transcribe(base_url: str, audio: bytes, filename: str = "jfk.wav") -> str:
    """One request on a fresh connection, no retries: a failure is counted, never hidden by the SDK's retry."""
    with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120) as client:
        return client.audio.transcriptions.create(model="whisper-base", file=(filename, audio), language="en").text


class TranscribeLoop:
    """Transcribe back to back from a thread until stopped; count successes and failures (with their errors)."""

    def __init__(self, base_url: str, audio: bytes) -> None:
        self.base_url, self.audio = base_url, audio
        self.ok = 0
        self.failures: list[str] = []
        self.bad_text: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                text = transcribe(self.base_url, self.audio)
            except Exception as e:  # every kind of failure is what this loop counts
                self.failures.append(f"{type(e).__name__}: {e}")
                continue
            if wer(JFK, text) < 0.15:
                self.ok += 1
            else:
                self.bad_text.append(text)

    def __enter__(self) -> TranscribeLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=180)


def service_url(kube: Kube) -> str:
    svc = kube.get("svc", WE, "-n", APP_NS)
    return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/v1"


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def ready_pods(kube: Kube, selector: str, ns: str = APP_NS) -> list[dict[str, Any]]:
    pods = kube.get("pods", "-n", ns, "-l", selector)["items"]
    return [
        p for p in pods if not p["metadata"].get("deletionTimestamp") and condition(p, "Ready").get("status") == "True"
    ]


def endpoint_ready(kube: Kube, replicas: int) -> bool:
    we = kube.get("we", WE, "-n", APP_NS)
    dep = kube.get("deploy", WE, "-n", APP_NS)
    st = dep.get("status", {})
    return (
        condition(we, "Ready").get("status") == "True"
        and st.get("observedGeneration") == dep["metadata"]["generation"]
        and st.get("updatedReplicas") == replicas
        and st.get("readyReplicas") == replicas
        and st.get("replicas") == replicas  # no old pod left
    )


def pod_selector(kube: Kube) -> str:
    labels = kube.get("deploy", WE, "-n", APP_NS)["spec"]["selector"]["matchLabels"]
    return ",".join(f"{k}={v}" for k, v in labels.items())


def test_operator_pod_ready_and_leading(kube: Kube) -> None:
    kube.kubectl("create", "namespace", NS)
    kube.helm(
        "install", RELEASE, "charts/kubewhisper", "--namespace", NS,
        "--set", "webhook.enabled=true", "--wait", "--timeout", "5m",
    )  # fmt: skip
    pods = kube.wait_for(
        "the operator pod Ready",
        lambda: ready_pods(kube, "app.kubernetes.io/component=operator", NS),
        120,
        f"get pods -n {NS} -o wide",
    )
    pod = pods[0]["metadata"]["name"]
    lease = kube.wait_for(
        "the operator to hold its Lease",
        lambda: kube.get("lease", "kubewhisper-operator", "-n", NS)["spec"].get("holderIdentity"),
        60,
        f"get lease -n {NS} -o yaml",
    )
    assert lease == pod
    # the webhook answers once its Service's endpoint reached kube-proxy's rules, a moment after the pod is Ready;
    # until then the API server refuses every WhisperEndpoint (failurePolicy Fail): "connection refused"
    kube.wait_for(
        "the webhook to answer through its Service",
        lambda: kube.attempt(
            "kubectl", "apply", "--dry-run=server", "-f", str(ROOT / "operator/examples/endpoint-cpu.yaml")
        ).returncode
        == 0,
        120,
        f"get endpoints -n {NS}",
    )
    # it runs in the pod with its ServiceAccount token, not the admin's: the RBAC the chart grants is what it has
    assert kube.get("pod", pod, "-n", NS)["spec"]["serviceAccountName"].startswith(RELEASE)


def test_webhook_refuses_an_invalid_endpoint_through_its_service(kube: Kube) -> None:
    bad = {
        "apiVersion": "kubewhisper.dev/v1alpha1",
        "kind": "WhisperEndpoint",
        "metadata": {"name": "two-gpus", "namespace": APP_NS},
        "spec": {"model": "openai/whisper-base", "gpu": {"count": 2}},
    }
    refused = kube.attempt("kubectl", "apply", "-f", "-", stdin=json.dumps(bad))
    assert refused.returncode != 0
    assert "denied the request" in refused.stderr and "MultiGPUUnsupported" in refused.stderr, refused.stderr
    assert kube.attempt("kubectl", "get", "we", "two-gpus", "-n", APP_NS).returncode != 0  # nothing was created


def test_cpu_endpoint_becomes_ready(kube: Kube) -> None:
    kube.kubectl("apply", "-f", str(ROOT / "operator/examples/endpoint-cpu.yaml"))
    kube.wait_for(
        "whisper-cpu Ready with its pod Ready",
        lambda: endpoint_ready(kube, 1),
        600,
        f"get we,deploy,pods -n {APP_NS} -o wide",
    )
    we = kube.get("we", WE, "-n", APP_NS)
    assert we["status"]["accelerator"] == "cpu"
    pod = ready_pods(kube, pod_selector(kube))[0]
    container = pod["spec"]["containers"][0]
    limits = container.get("resources", {}).get("limits", {})
    assert "nvidia.com/gpu" not in limits and "cpu" in limits and "memory" in limits
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DTYPE"] == "float32"
    # the CPU pool's default: VAD windows (the example sets no chunkingStrategy)
    assert env["CHUNKING_STRATEGY"] == "auto" and we["status"]["profile"]["chunkingStrategy"] == "auto"
    assert container["startupProbe"]["httpGet"]["path"] == "/ready"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_transcribes_from_the_host_through_the_service(kube: Kube, jfk: bytes) -> None:
    text = transcribe(service_url(kube), jfk)
    assert wer(JFK, text) < 0.15, text


def test_helm_test_transcribes_through_the_endpoint(kube: Kube) -> None:
    # the chart's test pod calls an endpoint by its DNS name; point it at the example endpoint
    kube.helm(
        "upgrade", RELEASE, "charts/kubewhisper", "--namespace", NS, "--reuse-values",
        "--set", f"tests.endpoint={WE}", "--set", f"tests.namespace={APP_NS}", "--wait", "--timeout", "5m",
    )  # fmt: skip
    out = kube.helm("test", RELEASE, "--namespace", NS, "--timeout", "5m")
    assert "Succeeded" in out, out


def test_a_44k_upload_goes_through_the_resampler_on_a_read_only_root(kube: Kube, jfk: bytes) -> None:
    audio, rate = sf.read(io.BytesIO(jfk), dtype="float32")
    up = soxr.resample(audio, rate, 44100)
    buf = io.BytesIO()
    sf.write(buf, np.asarray(up), 44100, format="WAV", subtype="PCM_16")
    text = transcribe(service_url(kube), buf.getvalue())
    assert wer(JFK, text) < 0.15, text


def test_runs_as_10001_with_a_read_only_root(kube: Kube) -> None:
    pod = ready_pods(kube, pod_selector(kube))[0]["metadata"]["name"]
    ids = kube.kubectl("exec", "-n", APP_NS, pod, "-c", "whisper", "--", "id")
    assert "uid=10001" in ids and "gid=10001" in ids, ids
    probe = (
        "import pathlib\ntry:\n    pathlib.Path('/kw-probe').write_text('x')\nexcept OSError as e:\n    print(e.errno)"
    )
    assert kube.kubectl("exec", "-n", APP_NS, pod, "-c", "whisper", "--", "python", "-c", probe).strip() == "30"


def test_a_pod_transcribes_through_status_url_by_dns_name(kube: Kube, jfk: bytes) -> None:
    url = kube.get("we", WE, "-n", APP_NS)["status"]["url"]
    assert url == "http://whisper-cpu.default.svc.cluster.local/v1/audio/transcriptions"
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "jfk", "namespace": APP_NS},
        "binaryData": {"jfk.wav": base64.b64encode(jfk).decode()},
    }
    # create, not apply: apply would copy the 470 KB of audio into an annotation (limit 256 KB)
    kube.run("kubectl", "create", "-f", "-", stdin=json.dumps(cm))
    # stdlib only: multipart by hand, the way any in-cluster client without the SDK would call status.url
    client = (
        "import json, sys, urllib.request\n"
        "url = sys.argv[1]\n"
        "audio = open('/audio/jfk.wav', 'rb').read()\n"
        "b = b'kubewhisperboundary'\n"
        "parts = [b'--' + b + b'\\r\\nContent-Disposition: form-data; name=\"model\"\\r\\n\\r\\nwhisper-base\\r\\n',\n"
        "         b'--' + b + b'\\r\\nContent-Disposition: form-data; name=\"file\"; filename=\"jfk.wav\"\\r\\n'\n"
        "         b'Content-Type: audio/wav\\r\\n\\r\\n' + audio + b'\\r\\n', b'--' + b + b'--\\r\\n']\n"
        "req = urllib.request.Request(url, data=b''.join(parts), headers={'Content-Type': 'multipart/form-data; "
        "boundary=' + b.decode()})\n"
        "print(json.dumps(json.load(urllib.request.urlopen(req, timeout=120))))\n"
    )
    image = kube.get("deploy", f"{RELEASE}-operator", "-n", NS)["spec"]["template"]["spec"]["containers"][0]["image"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dns-client", "namespace": APP_NS},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", client, url],
                    "volumeMounts": [{"name": "audio", "mountPath": "/audio"}],
                }
            ],
            "volumes": [{"name": "audio", "configMap": {"name": "jfk"}}],
        },
    }
    kube.run("kubectl", "apply", "-f", "-", stdin=json.dumps(pod))
    phase = kube.wait_for(
        "the client pod to finish",
        lambda: kube.get("pod", "dns-client", "-n", APP_NS)["status"].get("phase") in ("Succeeded", "Failed")
        and kube.get("pod", "dns-client", "-n", APP_NS)["status"]["phase"],
        180,
        f"describe pod dns-client -n {APP_NS}",
    )
    logs = kube.kubectl("logs", "dns-client", "-n", APP_NS)
    assert phase == "Succeeded", logs
    text = json.loads(logs.strip().splitlines()[-1])["text"]
    assert wer(JFK, text) < 0.15, text
    kube.kubectl("delete", "pod", "dns-client", "-n", APP_NS, "--wait=false")


def test_sigterm_reaches_the_server(kube: Kube) -> None:
    """SIGTERM to PID 1 (tini) reaches the server, which exits cleanly: exit code 0, not 137 after a SIGKILL."""
    selector = pod_selector(kube)
    pod = ready_pods(kube, selector)[0]["metadata"]["name"]
    kill = "import os, signal; os.kill(1, signal.SIGTERM)"
    kube.kubectl("exec", "-n", APP_NS, pod, "-c", "whisper", "--", "python", "-c", kill)

    def terminated() -> dict[str, Any] | None:
        status = kube.get("pod", pod, "-n", APP_NS)["status"]["containerStatuses"]
        state = next(s for s in status if s["name"] == "whisper")
        return state.get("lastState", {}).get("terminated")

    last = kube.wait_for("the container to restart after SIGTERM", terminated, 120, f"describe pod {pod} -n {APP_NS}")
    assert last["exitCode"] == 0, last
    kube.wait_for("the pod Ready again", lambda: endpoint_ready(kube, 1), 300, f"get pods -n {APP_NS} -o wide")


def test_scale_to_two_replicas_both_serve(kube: Kube, jfk: bytes) -> None:
    kube.kubectl("scale", f"we/{WE}", "--replicas=2", "-n", APP_NS)
    kube.wait_for("two Ready pods", lambda: endpoint_ready(kube, 2), 600, f"get we,deploy,pods -n {APP_NS} -o wide")
    pods = ready_pods(kube, pod_selector(kube))
    assert len(pods) == 2
    port = pods[0]["spec"]["containers"][0]["ports"][0]["containerPort"]
    for p in pods:
        text = transcribe(f"http://{p['status']['podIP']}:{port}/v1", jfk)
        assert wer(JFK, text) < 0.15, (p["metadata"]["name"], text)
    addresses = kube.get("endpoints", WE, "-n", APP_NS)["subsets"][0]["addresses"]
    assert len(addresses) == 2


def test_a_spec_change_rolls_the_pods_with_zero_failed_requests(kube: Kube, jfk: bytes) -> None:
    before = {p["metadata"]["name"] for p in ready_pods(kube, pod_selector(kube))}
    with TranscribeLoop(service_url(kube), jfk) as loop:
        kube.wait_for("a first transcription", lambda: loop.ok >= 1, 120)
        kube.kubectl("patch", "we", WE, "-n", APP_NS, "--type=merge", "-p", '{"spec": {"timestamps": "segments"}}')
        kube.wait_for(
            "the rollout to finish",
            lambda: endpoint_ready(kube, 2)
            and not before
            & {p["metadata"]["name"] for p in kube.get("pods", "-n", APP_NS, "-l", pod_selector(kube))["items"]},
            900,
            f"get we,deploy,rs,pods -n {APP_NS} -o wide",
        )
        served = loop.ok
        kube.wait_for("a transcription by the new pods", lambda: loop.ok > served, 120)
    print(f"rollout under load: {loop.ok} transcriptions, {len(loop.failures)} failed")
    assert loop.failures == [], loop.failures
    assert loop.bad_text == [], loop.bad_text
    env = {
        e["name"]: e.get("value")
        for e in kube.get("deploy", WE, "-n", APP_NS)["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["TIMESTAMPS"] == "segments"


def test_deleting_a_pod_under_load_fails_no_request(kube: Kube, jfk: bytes) -> None:
    victim = ready_pods(kube, pod_selector(kube))[0]["metadata"]["name"]
    with TranscribeLoop(service_url(kube), jfk) as loop:
        kube.wait_for("a first transcription", lambda: loop.ok >= 1, 120)
        kube.kubectl("delete", "pod", victim, "-n", APP_NS, "--wait=true", timeout=300)
        kube.wait_for(
            "the replacement pod Ready",
            lambda: endpoint_ready(kube, 2)
            and victim not in {p["metadata"]["name"] for p in ready_pods(kube, pod_selector(kube))},
            600,
            f"get pods -n {APP_NS} -o wide",
        )
        served = loop.ok
        kube.wait_for("a transcription after the replacement", lambda: loop.ok > served, 120)
    print(f"pod deleted under load: {loop.ok} transcriptions, {len(loop.failures)} failed")
    assert loop.failures == [], loop.failures
    assert loop.bad_text == [], loop.bad_text


def test_the_vllm_engine_serves_on_cpu_from_a_read_only_root(kube: Kube, jfk: bytes) -> None:
    """spec.engine: vllm on a CPU endpoint: vLLM's CPU backend in the same image, threads from the pod's CPU limit,
    every cache it writes on the mounted volumes."""
    name = "whisper-cpu-vllm"
    we = {
        "apiVersion": "kubewhisper.dev/v1alpha1",
        "kind": "WhisperEndpoint",
        "metadata": {"name": name, "namespace": APP_NS},
        "spec": {
            "model": "/models/whisper-base",
            "servedModelName": "whisper-base",
            "modelImage": "ghcr.io/kubewhisper/kubewhisper-model-whisper-base:0.1.0",
            "engine": "vllm",
            "gpu": {"count": 0},
            "resources": {"requests": {"cpu": "250m", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "8Gi"}},
        },
    }
    kube.run("kubectl", "apply", "-f", "-", stdin=json.dumps(we))

    def ready() -> bool:
        obj = kube.get("we", name, "-n", APP_NS)
        dep = kube.get("deploy", name, "-n", APP_NS)
        return condition(obj, "Ready").get("status") == "True" and dep.get("status", {}).get("readyReplicas") == 1

    kube.wait_for(f"{name} Ready", ready, 900, f"get we,deploy,pods -n {APP_NS} -o wide")
    container = kube.get("deploy", name, "-n", APP_NS)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ENGINE"] == "vllm" and env["DTYPE"] == "float32"
    svc = kube.get("svc", name, "-n", APP_NS)
    text = transcribe(f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/v1", jfk)
    assert wer(JFK, text) < 0.15, text
    kube.kubectl("delete", "we", name, "-n", APP_NS, "--wait=true", timeout=300)


def test_helm_uninstall_leaves_nothing_behind(kube: Kube) -> None:
    kube.kubectl("delete", "we", "--all", "-n", APP_NS, "--wait=true", timeout=300)
    kube.kubectl("delete", "configmap", "jfk", "-n", APP_NS)
    kube.helm("uninstall", RELEASE, "--namespace", NS, "--wait", "--timeout", "3m")
    kube.wait_for(
        "the release's objects to be gone",
        lambda: not kube.get("deploy,rs,pods,svc,lease,jobs,pdb", "-n", NS)["items"],
        180,
        f"get all,lease,configmap,secret -n {NS}",
    )
    left = [
        i["metadata"]["name"]
        for i in kube.get("configmap,secret,serviceaccount", "-n", NS)["items"]
        if i["metadata"]["name"] != "kube-root-ca.crt" and not i["metadata"]["name"].startswith("default")
    ]
    assert left == []
    labelled = "app.kubernetes.io/instance=" + RELEASE
    assert kube.get("clusterrole,clusterrolebinding,validatingwebhookconfiguration", "-l", labelled)["items"] == []
    # the endpoints' pods drain (preStop, grace period) after their Deployments are collected
    managed = "app.kubernetes.io/managed-by=kubewhisper-operator"
    kube.wait_for(
        "the endpoints' objects to be gone",
        lambda: not kube.get("deploy,rs,svc,pods", "-n", APP_NS, "-l", managed)["items"],
        300,
        f"get deploy,rs,svc,pods -n {APP_NS} -l {managed}",
    )
