"""The chart on a real v1.20 control plane: install, upgrade, uninstall; RBAC proven both ways (`kubectl auth can-i`
and the operator itself running under the chart's ServiceAccount with the chart's command and env); `helm test`.

There is no kubelet: the operator runs here as a process (exactly the rendered container's command and env, with
the ServiceAccount's token as its identity), and the `helm test` pod's container runs here too, its outcome written
to the pod's status the way a kubelet would. Everything else (admission, RBAC, Helm's hooks) is the real thing.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from cluster.helpers import wait_for
from conftest import free_port

from .conftest import CHART, ROOT, find, run_test_pod_script

pytestmark = pytest.mark.cluster


def install(cluster, release, namespace, values=None, *args, action="install"):
    vf = Path(f"/tmp/kubewhisper-values-{uuid.uuid4().hex[:8]}.yaml")
    vf.write_text(yaml.safe_dump(values or {}))
    try:
        return cluster.helm(action, release, str(CHART), "-n", namespace, "-f", str(vf), *args, timeout=180)
    finally:
        vf.unlink()


def get(cluster, *args):
    p = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(p.stdout) if p.returncode == 0 else None


@pytest.fixture(scope="module")
def release(cluster):
    """The chart with default values (operator replicas 0: it runs as a process in the tests that need it)."""
    ns = f"kw-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    install(cluster, "kw", ns, {"operator": {"replicas": 0}}, "--wait", "--timeout", "60s")
    yield {
        "namespace": ns,
        "name": "kw",
        "sa": "kw-kubewhisper",
        "lease": "kw-kubewhisper-operator",
        "manifest": [d for d in yaml.safe_load_all(cluster.helm("get", "manifest", "kw", "-n", ns).stdout) if d],
    }
    cluster.helm("uninstall", "kw", "-n", ns, "--wait", check=False)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def sa_kubeconfig(cluster, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (v1.20: its token Secret)."""
    secret = wait_for(lambda: (get(cluster, "sa", sa, "-n", namespace) or {}).get("secrets"), 30, what="SA token")[0][
        "name"
    ]
    token = base64.b64decode(get(cluster, "secret", secret, "-n", namespace)["data"]["token"]).decode()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": admin["clusters"][0]["name"], "user": sa}}],
        "current-context": sa,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_install_upgrade_uninstall(cluster, namespace):
    ns, name = namespace, "cycle"
    out = install(cluster, name, ns, {"operator": {"replicas": 1}})  # the real Deployment: pending without kubelet
    assert "STATUS: deployed" in out.stdout
    dep = get(cluster, "deployment", f"{name}-kubewhisper-operator", "-n", ns)
    assert dep["spec"]["strategy"]["type"] == "Recreate" and dep["spec"]["replicas"] == 1
    assert get(cluster, "clusterrole", f"{name}-kubewhisper-operator-cluster")
    assert get(cluster, "serviceaccount", f"{name}-kubewhisper", "-n", ns)
    # the API server admitted the pod under its securityContext, and the scheduler placed it
    pod = wait_for(
        lambda: (get(cluster, "pods", "-n", ns, "-l", "app.kubernetes.io/component=operator") or {}).get("items"),
        30,
        what="operator pod",
    )[0]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True and pod["spec"].get("nodeName")

    values = {
        "operator": {"replicas": 1, "logLevel": "DEBUG"},
        "endpoints": [
            {"name": "whisper-t4", "spec": {"model": "openai/whisper-large-v3", "nodeSelector": {"pool": "t4"}}}
        ],
    }
    out = install(cluster, name, ns, values, action="upgrade")
    assert "REVISION: 2" in out.stdout
    dep = get(cluster, "deployment", f"{name}-kubewhisper-operator", "-n", ns)
    assert "--debug" in dep["spec"]["template"]["spec"]["containers"][0]["command"]
    we = get(cluster, "whisperendpoints", "whisper-t4", "-n", ns)
    assert we["spec"]["nodeSelector"] == {"pool": "t4"} and we["spec"]["replicas"] == 1  # CRD default applied
    history = json.loads(cluster.helm("history", name, "-n", ns, "-o", "json").stdout)
    assert [h["status"] for h in history] == ["superseded", "deployed"]

    # a bad value fails the upgrade with the schema's message, and the release stays as it was
    bad = Path(f"/tmp/kw-bad-{uuid.uuid4().hex[:6]}.yaml")
    bad.write_text("operator: {replicas: 5}\n")
    p = cluster.helm("upgrade", name, str(CHART), "-n", ns, "-f", str(bad), check=False)
    bad.unlink()
    assert p.returncode != 0 and "operator.replicas: Must be less than or equal to 1" in p.stderr
    assert len(json.loads(cluster.helm("history", name, "-n", ns, "-o", "json").stdout)) == 2

    cluster.helm("uninstall", name, "-n", ns, "--wait", "--timeout", "60s")
    assert get(cluster, "deployment", f"{name}-kubewhisper-operator", "-n", ns) is None
    assert get(cluster, "clusterrole", f"{name}-kubewhisper-operator-cluster") is None
    assert get(cluster, "clusterrolebinding", f"{name}-kubewhisper-operator-namespaced") is None
    assert get(cluster, "serviceaccount", f"{name}-kubewhisper", "-n", ns) is None
    assert get(cluster, "whisperendpoints", "whisper-t4", "-n", ns) is None
    assert get(cluster, "crd", "whisperendpoints.kubewhisper.dev")  # Helm never deletes CRDs


def test_full_values_pass_server_side_validation(cluster, helm):
    """Every object of a non-default render is accepted by the v1.20 API server (dry run, nothing persists)."""
    from .test_chart import FULL

    values = {**FULL, "serviceMonitor": {"enabled": False}}
    for ns in ("kubewhisper", "team-a", "team-b"):
        cluster.kubectl("create", "namespace", ns, check=False)
    try:
        manifest = install(cluster, "kw", "kubewhisper", values, action="template").stdout
        p = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
        assert "deployment.apps/whisper-op-operator created (server dry run)" in p.stdout
        assert "whisperendpoint.kubewhisper.dev/whisper-h100 created (server dry run)" in p.stdout
    finally:
        for ns in ("kubewhisper", "team-a", "team-b"):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# (verb, resource[/name][#subresource], namespace: None for cluster scope / all namespaces, RELEASE for the chart's)
ALLOWED = [
    ("list", "nodes", None),
    ("watch", "nodes", None),
    ("list", "whisperendpoints.kubewhisper.dev", None),
    ("watch", "whisperendpoints.kubewhisper.dev", None),
    ("get", "whisperendpoints.kubewhisper.dev", "any-ns"),
    ("patch", "whisperendpoints.kubewhisper.dev#status", "any-ns"),
    ("create", "deployments.apps", "any-ns"),
    ("patch", "deployments.apps", "any-ns"),
    ("patch", "services", "any-ns"),
    ("patch", "whisperendpoints.kubewhisper.dev", "any-ns"),
    ("patch", "deployments.apps#scale", "any-ns"),
    ("patch", "poddisruptionbudgets.policy", "any-ns"),
    ("create", "jobs.batch", "RELEASE"),
    ("delete", "jobs.batch", "RELEASE"),
    ("list", "pods", "RELEASE"),
    ("get", "configmaps/kubewhisper-gpu-probes", "RELEASE"),
    ("create", "events", "any-ns"),
    ("patch", "events", "any-ns"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", None),
]
DENIED = [
    ("get", "secrets", None),
    ("list", "secrets", "RELEASE"),
    ("get", "secrets", "any-ns"),
    ("create", "pods#exec", "any-ns"),
    ("create", "pods#attach", "any-ns"),
    ("create", "pods", "any-ns"),
    ("list", "pods", "any-ns"),
    ("create", "jobs.batch", "any-ns"),
    ("get", "configmaps/other", "RELEASE"),
    ("delete", "deployments.apps", "any-ns"),
    ("delete", "whisperendpoints.kubewhisper.dev", "any-ns"),
    ("update", "whisperendpoints.kubewhisper.dev", "any-ns"),
    ("patch", "nodes", None),
    ("delete", "nodes", None),
    ("get", "configmaps", "any-ns"),
    ("create", "clusterroles.rbac.authorization.k8s.io", None),
    ("create", "rolebindings.rbac.authorization.k8s.io", "RELEASE"),
    ("create", "namespaces", None),
    ("create", "leases.coordination.k8s.io", "any-ns"),
    ("delete", "leases.coordination.k8s.io", "RELEASE"),
    ("update", "leases.coordination.k8s.io/someone-else", "RELEASE"),
    ("delete", "jobs.batch", "any-ns"),
    ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io", None),
    ("impersonate", "serviceaccounts", "RELEASE"),
    ("create", "serviceaccounts#token", "RELEASE"),
]


def can_i(cluster, release, verb, resource, ns) -> bool:
    as_ = f"system:serviceaccount:{release['namespace']}:{release['sa']}"
    scope = ["-A"] if ns is None else ["-n", release["namespace"] if ns == "RELEASE" else ns]
    resource, _, sub = resource.partition("#")
    p = cluster.kubectl(
        "auth", "can-i", verb, resource, *scope, "--as", as_, *([f"--subresource={sub}"] if sub else []), check=False
    )
    assert p.stdout.strip() in ("yes", "no"), p.stdout + p.stderr
    return p.stdout.strip() == "yes"


def test_rbac_can_i_exactly_what_is_needed(cluster, release):
    lease = f"leases.coordination.k8s.io/{release['lease']}"
    allowed = ALLOWED + [
        ("get", lease, "RELEASE"),
        ("update", lease, "RELEASE"),
        ("create", "leases.coordination.k8s.io", "RELEASE"),
    ]
    wrong_yes = [a for a in DENIED if can_i(cluster, release, *a)]
    wrong_no = [a for a in allowed if not can_i(cluster, release, *a)]
    assert not wrong_yes, f"the operator may do what it does not need: {wrong_yes}"
    assert not wrong_no, f"the operator may not do what it needs: {wrong_no}"


def test_operator_runs_under_the_charts_identity(cluster, release, namespace, tmp_path):
    """The rendered operator container (command + env), run here as the chart's ServiceAccount, reconciles two
    endpoints (T4 -> half, H100 -> bfloat16), holds its Lease and answers liveness: RBAC suffices, end to end."""
    dep = find(release["manifest"], "Deployment")
    proc, port, log_path = start_chart_operator(cluster, release, tmp_path)
    try:
        wait_for(lambda: _ok(f"http://127.0.0.1:{port}/healthz"), 60, what="kopf liveness")
        for f in ("endpoint-t4.yaml", "endpoint-h100.yaml"):
            cluster.kubectl("apply", "-n", namespace, "-f", str(ROOT / "operator/examples" / f))
        for name, dtype in (("whisper-t4", "half"), ("whisper-h100", "bfloat16")):
            we = wait_for(lambda n=name: _profiled(cluster, namespace, n), 60, what=f"{name} profile")
            assert we["status"]["profile"]["dtype"] == dtype, we["status"]
            d = wait_for(lambda n=name: get(cluster, "deployment", n, "-n", namespace), 30, what=f"Deployment {name}")
            assert d["metadata"]["ownerReferences"][0]["name"] == name
            assert get(cluster, "service", name, "-n", namespace)
        lease = get(cluster, "lease", release["lease"], "-n", release["namespace"])
        assert lease["spec"]["holderIdentity"] == "pytest-operator"
        # owned by the operator's Deployment (read with the chart's owner Role): helm uninstall takes it along
        owner = get(cluster, "deployment", dep["metadata"]["name"], "-n", release["namespace"])
        assert lease["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
        # the chart's `helm test` script, run here against the real operator's /healthz: it answers and leads
        script = (CHART / "files/operator-test.py").read_text()
        run = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "HEALTHZ_URL": f"http://127.0.0.1:{port}/healthz", "WANT_LEADER": "1", "TIMEOUT": "30"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0 and "PASS" in run.stdout, run.stdout + run.stderr
        assert proc.poll() is None
    finally:
        stop(proc)
    text = log_path.read_text(errors="replace")
    assert "Forbidden" not in text and " 403" not in text, text[-4000:]


def start_chart_operator(cluster, release, tmp_path):
    """The rendered operator container (command + env) as a local process, authenticated as the chart's
    ServiceAccount (no kubelet here to run its pod)."""
    c = find(release["manifest"], "Deployment")["spec"]["template"]["spec"]["containers"][0]
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "kopf")
        if a == "kopf"
        else (f"--liveness=http://127.0.0.1:{port}/healthz" if a.startswith("--liveness=") else a)
        for a in c["command"]
    ]
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    env["KUBEWHISPER_IDENTITY"] = "pytest-operator"  # the pod's name, from the downward API, in a cluster
    env["KUBEWHISPER_RESYNC_SECONDS"] = "2"
    kubeconfig = sa_kubeconfig(cluster, release["namespace"], release["sa"], tmp_path / "sa.kubeconfig")
    log_path = tmp_path / "operator.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env, "KUBECONFIG": str(kubeconfig)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, port, log_path


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_uninstall_leaves_nothing_the_operator_created(cluster, tmp_path):
    """The Lease the operator creates at run time is owned by its Deployment: after helm uninstall the garbage
    collector deletes it (before the owner, it would stay behind)."""
    ns = f"kw-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    try:
        install(cluster, "gone", ns, {"operator": {"replicas": 0}}, "--wait", "--timeout", "60s")
        manifest = [d for d in yaml.safe_load_all(cluster.helm("get", "manifest", "gone", "-n", ns).stdout) if d]
        release = {"namespace": ns, "sa": "gone-kubewhisper", "manifest": manifest}
        proc, port, _ = start_chart_operator(cluster, release, tmp_path)
        try:
            lease = wait_for(lambda: get(cluster, "lease", "gone-kubewhisper-operator", "-n", ns), 60, what="Lease")
        finally:
            stop(proc)
        assert lease["metadata"]["ownerReferences"][0]["name"] == "gone-kubewhisper-operator"
        cluster.helm("uninstall", "gone", "-n", ns, "--wait", "--timeout", "60s")
        wait_for(lambda: get(cluster, "lease", "gone-kubewhisper-operator", "-n", ns) is None, 60, what="Lease GC")
        left = get(cluster, "all,leases,configmaps,secrets,roles,rolebindings,serviceaccounts", "-n", ns)
        names = [
            f"{i['kind']}/{i['metadata']['name']}"
            for i in left["items"]
            # what Kubernetes itself puts in every namespace
            if i["metadata"]["name"] not in ("default", "kube-root-ca.crt")
            and not i["metadata"]["name"].startswith("default-token-")
        ]
        assert names == [], f"left behind by the release: {names}"
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _ok(url):
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _profiled(cluster, ns, name):
    we = get(cluster, "whisperendpoints", name, "-n", ns)
    return we if we and (we.get("status") or {}).get("profile") else None


@pytest.mark.engine
def test_helm_test_transcribes_through_the_endpoint(cluster, namespace, image_server):
    """`helm test` creates its hook pod; the pod's container runs here against the real server (no kubelet or
    cluster network), and its exit code becomes the pod's phase, as a kubelet would report it."""
    values = {
        "operator": {"replicas": 0},
        "endpoints": [{"name": "whisper-tiny", "spec": {"model": "tiny.en", "nodeSelector": {"pool": "t4"}}}],
    }
    install(cluster, "demo", namespace, values)
    try:
        helm_test = subprocess.Popen(
            [str(cluster.bin_dir / "helm"), "test", "demo", "-n", namespace, "--timeout", "180s"],
            env=cluster.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        pod_name = "demo-kubewhisper-test-transcription"
        pod = wait_for(lambda: get(cluster, "pod", pod_name, "-n", namespace), 60, what="helm test pod")
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["TRANSCRIBE_URL"] == f"http://whisper-tiny.{namespace}.svc.cluster.local/v1/audio/transcriptions"
        run = run_test_pod_script(pod, image_server["url"])
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {
            "phase": "Succeeded" if run.returncode == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": "transcribe",
                    "ready": False,
                    "restartCount": 0,
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "state": {
                        "terminated": {
                            "exitCode": run.returncode,
                            "reason": "Completed",
                            "startedAt": now,
                            "finishedAt": now,
                            "message": (run.stdout + run.stderr)[-1000:],
                        }
                    },
                }
            ],
        }
        cluster.kubectl(
            "patch",
            "pod",
            pod_name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
            check=False,
        )
        # kubectl 1.32 vs API 1.20: --subresource may be unknown there, then use the API. A pod already gone was
        # patched: helm saw it succeed and deleted it (hook-delete-policy hook-succeeded).
        got = cluster.kubectl("get", "pod", pod_name, "-n", namespace, "-o", "jsonpath={.status.phase}", check=False)
        if got.returncode == 0 and got.stdout != status["phase"]:
            _patch_status_via_api(cluster, namespace, pod_name, status)
        out, _ = helm_test.communicate(timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        assert helm_test.returncode == 0, out
        assert "Phase:          Succeeded" in out and pod_name in out
    finally:
        cluster.helm("uninstall", "demo", "-n", namespace, check=False)


def _patch_status_via_api(cluster, namespace, pod, status):
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=cluster.kubeconfig)
    client.CoreV1Api(api).patch_namespaced_pod_status(pod, namespace, {"status": status})
