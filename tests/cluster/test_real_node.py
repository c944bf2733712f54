"""The local cluster's real node on its own, independent of the project's images (scripts/node-up.sh).

One cluster with a node for this module (scripts/cluster-up.sh in a temp dir on free ports; the node itself is one per
machine). The pods run a test image built here in a second: Debian's static busybox in a scratch image packed by
scripts/oci-image.sh (`busybox httpd` serves), with the host's /usr mounted read-only for the client pod's python3
(stdlib resolver and TLS, so DNS goes through the pod's real resolv.conf and the API call verifies the ServiceAccount's
ca.crt). The last test tears the cluster down and checks that nothing is left on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kubernetes import client, config

from helpers import free_port_block

from .helpers import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
NODE = "kubewhisper-node"
IMAGE = "localhost/kubewhisper/busybox:test"
BRIDGE = "kubewhisper0"


def _host_ip() -> str:
    out = subprocess.run(["ip", "-4", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=True).stdout
    words = out.split()
    return words[words.index("src") + 1]


def _busybox_image(work: Path, sock: Path) -> None:
    """A scratch image holding /bin/busybox (Debian's busybox-static) and a page to serve, imported into the node."""
    if not shutil.which("busybox"):  # set-up, like the node's own packages (scripts/node-up.sh)
        subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "busybox-static"],
            check=True,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static installed no busybox"
    rootfs = work / "rootfs"
    for d in ("bin", "usr", "www", "tmp", "etc"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy(busybox, rootfs / "bin/busybox")
    (rootfs / "bin/sh").symlink_to("busybox")
    # the host's /usr is mounted at /usr in the client pod: these make its dynamic loader and libraries resolve
    (rootfs / "lib").symlink_to("usr/lib")
    (rootfs / "lib64").symlink_to("usr/lib64")
    (rootfs / "www/index.html").write_text("served by the real node\n")
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    archive = work / "busybox.tar"
    subprocess.run(
        [str(ROOT / "scripts/oci-image.sh"), str(archive), IMAGE, str(rootfs), '["/bin/busybox"]'], check=True
    )
    subprocess.run(
        ["ctr", "--address", str(sock), "-n", "k8s.io", "images", "import", str(archive)],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("node-cluster")
    base, node_base = free_port_block(5), free_port_block(4)
    env = dict(
        os.environ,
        KUBEWHISPER_CLUSTER_DIR=str(d),
        KUBEWHISPER_APISERVER_PORT=str(base),
        KUBEWHISPER_ETCD_PORT=str(base + 3),
        KUBEWHISPER_NODE_PORT=str(node_base),
        KUBEWHISPER_NODE="1",
    )
    try:
        out = subprocess.run(
            [str(ROOT / "scripts/cluster-up.sh")], env=env, capture_output=True, text=True, timeout=900
        )
        if out.returncode != 0:
            pytest.fail(f"cluster-up.sh with the node exited {out.returncode}:\n{out.stderr[-6000:]}", pytrace=False)
        kubeconfig = out.stdout.strip().splitlines()[-1].split("=", 1)[1]
        _busybox_image(d / "image", d / "node/containerd.sock")
        api = config.new_client_from_config(config_file=kubeconfig)
        yield {"dir": d, "env": env, "api": api, "core": client.CoreV1Api(api)}
    finally:
        subprocess.run([str(ROOT / "scripts/cluster-down.sh")], env=env, capture_output=True, timeout=180)


@pytest.fixture(scope="module")
def ns(node_cluster):
    core = node_cluster["core"]
    name = f"node-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(
        lambda: any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items),
        what="the namespace's default ServiceAccount",
    )
    return name


def _ready(core, ns: str, name: str) -> bool:
    pod = core.read_namespaced_pod(name, ns)
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_node_is_ready_with_the_hosts_address(node_cluster):
    node = node_cluster["core"].read_node(NODE)
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "True", ready
    assert {a.type: a.address for a in node.status.addresses}["InternalIP"] == _host_ip()
    assert node.metadata.labels["kubewhisper.dev/node"] == "real"
    assert node.status.node_info.container_runtime_version.startswith("containerd://")


def test_kubelet_api_refuses_anonymous_requests(node_cluster):
    url = f"https://{_host_ip()}:{node_cluster['env']['KUBEWHISPER_NODE_PORT']}/pods"
    out = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", url], capture_output=True, text=True)
    assert out.stdout == "401"  # the API server's client certificate is the way in (logs and exec: tested below)


def test_cluster_up_again_reuses_the_running_cluster(node_cluster):
    d = node_cluster["dir"]
    pids = {p.name: p.read_text() for p in [*d.glob("*.pid"), *d.glob("node/*.pid")]}
    # before the daemons stopped inheriting the state dir's lock, this second call waited for it forever
    out = subprocess.run(
        [str(ROOT / "scripts/cluster-up.sh")], env=node_cluster["env"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"KUBECONFIG={d}/kubeconfig"
    assert {p.name: p.read_text() for p in [*d.glob("*.pid"), *d.glob("node/*.pid")]} == pids


def test_kubernetes_service_has_the_api_servers_endpoint(node_cluster):
    ep = node_cluster["core"].read_namespaced_endpoints("kubernetes", "default")
    port = int(node_cluster["env"]["KUBEWHISPER_APISERVER_PORT"])
    assert [(a.ip, p.port) for s in ep.subsets for a in s.addresses for p in s.ports] == [(_host_ip(), port)]


def test_a_second_node_is_refused_before_anything_starts(node_cluster, tmp_path):
    base = free_port_block(5)
    env = dict(
        node_cluster["env"],
        KUBEWHISPER_CLUSTER_DIR=str(tmp_path),
        KUBEWHISPER_APISERVER_PORT=str(base),
        KUBEWHISPER_ETCD_PORT=str(base + 3),
    )
    out = subprocess.run([str(ROOT / "scripts/cluster-up.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "step 'one node per machine' failed" in out.stderr and str(node_cluster["dir"]) in out.stderr
    assert not list(tmp_path.glob("*.pid")) and not (tmp_path / "node").exists()  # nothing was started


def test_pod_serves_through_a_cluster_ip_from_the_host(node_cluster, ns):
    core = node_cluster["core"]
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": IMAGE,
                        "imagePullPolicy": "Never",
                        "args": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                        "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
                    }
                ]
            },
        },
    )
    svc = core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    wait_for(lambda: _ready(core, ns, "web"), timeout=120, what="pod web Ready")
    pod = core.read_namespaced_pod("web", ns)
    assert pod.spec.node_name == NODE and pod.status.pod_ip.startswith("10.244.0.")

    def fetch():  # kube-proxy programs the Service's rules when it sees the endpoint: wait for that event's effect
        r = subprocess.run(
            ["curl", "-sf", "--max-time", "2", f"http://{svc.spec.cluster_ip}/index.html"], capture_output=True
        )
        return r.stdout if r.returncode == 0 else None

    assert wait_for(fetch, timeout=60, what="the ClusterIP serving") == b"served by the real node\n"


CLIENT = r"""
import json, socket, ssl, sys, urllib.request
ns = sys.argv[1]
out = {}
for name in (f"web.{ns}.svc.cluster.local", f"web.{ns}", "web", "kubernetes.default.svc.cluster.local"):
    out[name] = socket.gethostbyname(name)
try:
    socket.gethostbyname(f"nope.{ns}.svc.cluster.local")
    out["nope"] = "resolved"
except socket.gaierror as e:
    out["nope"] = e.errno == socket.EAI_NONAME
out["page"] = urllib.request.urlopen(f"http://web.{ns}.svc.cluster.local/index.html", timeout=10).read().decode()
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")  # verifies the API server's certificate
req = urllib.request.Request(
    f"https://kubernetes.default.svc/api/v1/namespaces/{ns}/services",
    headers={"Authorization": "Bearer " + open(f"{sa}/token").read()},
)
items = json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["items"]
out["services"] = [s["metadata"]["name"] for s in items]
print(json.dumps(out))
"""


def test_pod_resolves_services_and_lists_through_the_api_with_its_token(node_cluster, ns):
    core = node_cluster["core"]
    wait_for(lambda: _ready(core, ns, "web"), timeout=120, what="pod web Ready (from the previous test)")
    client.RbacAuthorizationV1Api(node_cluster["api"]).create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "default-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
        },
    )
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "client"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "client",
                        "image": IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["/usr/bin/python3", "-c", CLIENT, ns],
                        "volumeMounts": [{"name": "usr", "mountPath": "/usr", "readOnly": True}],
                    }
                ],
                "volumes": [{"name": "usr", "hostPath": {"path": "/usr"}}],
            },
        },
    )
    phase = wait_for(
        lambda: core.read_namespaced_pod("client", ns).status.phase in ("Succeeded", "Failed")
        and core.read_namespaced_pod("client", ns).status.phase,
        timeout=120,
        what="the client pod to finish",
    )
    log = core.read_namespaced_pod_log("client", ns)
    assert phase == "Succeeded", log
    out = json.loads(log.strip().splitlines()[-1])
    web_ip = core.read_namespaced_service("web", ns).spec.cluster_ip
    assert out[f"web.{ns}.svc.cluster.local"] == out[f"web.{ns}"] == out["web"] == web_ip
    assert out["kubernetes.default.svc.cluster.local"] == "10.0.0.1"
    assert out["nope"] is True  # NXDOMAIN, not forwarded and not answered
    assert out["page"] == "served by the real node\n"
    assert out["services"] == ["web"]


def test_cluster_down_leaves_nothing_behind(node_cluster):
    d = node_cluster["dir"]
    pids = [int(p.read_text()) for p in [*d.glob("*.pid"), *d.glob("node/*.pid")]]
    assert len(pids) == 8, pids  # etcd, apiserver, controller-manager, scheduler, containerd, kubelet, proxy, dns
    shims = _shims(d / "node/containerd.sock")
    assert shims, "no containerd shim found for the pods"
    baseline = dict(ln.split(" = ", 1) for ln in (d / "node/baseline.sysctl").read_text().splitlines())
    assert baseline.get("net.ipv4.ip_forward"), baseline
    # not a shim, only naming the socket like one: cluster-down must leave it alone (it once killed such processes)
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "-address", str(d / "node/containerd.sock")]
    )
    try:
        out = subprocess.run(
            [str(ROOT / "scripts/cluster-down.sh")],
            env=node_cluster["env"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert out.returncode == 0, out.stderr
        assert bystander.poll() is None, "cluster-down killed a process that is not a containerd shim"
    finally:
        bystander.kill()
    assert [p for p in pids + shims if Path(f"/proc/{p}").exists()] == []
    for table in ("filter", "nat", "mangle"):
        rules = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True, check=True).stdout
        assert "KUBE-" not in rules and "CNI-" not in rules, (table, rules)
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()
    assert not [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if f" {d}/" in ln]
    assert not Path("/run/kubewhisper-node").exists()
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith("veth")]
    for key, value in baseline.items():
        now = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, check=True).stdout.strip()
        assert now == value, (key, now, value)


def _shims(sock: Path) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(sock).encode() in cmd:
                found.append(int(p.name))
    return found
