"""Session fixtures for the cluster tier: a real kube-apiserver + etcd + controller-manager + scheduler (v1.20.2,
scripts/cluster-up.sh) on free 127.0.0.1 ports in a temp dir, fake GPU nodes, and the operator under
kopf.testing.KopfRunner. The control plane is stopped by PID at session end, even when tests fail.

There is no kubelet: pods are scheduled onto the fake nodes but never start, so tests patch pod status (the
``status`` subresource) to simulate readiness and the NVML probe's termination message. That is the only simulated
part: everything else (CRD validation, the Deployment/GC/Job controllers, the scheduler) is the real thing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from helpers import free_port_block

from .helpers import fake_node

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster")
    base = free_port_block(5)  # API server, controller-manager, scheduler; etcd client, etcd peer
    env = dict(
        os.environ,
        KUBEWHISPER_CLUSTER_DIR=str(d),
        KUBEWHISPER_APISERVER_PORT=str(base),
        KUBEWHISPER_ETCD_PORT=str(base + 3),
        KUBEWHISPER_NODE="0",  # the control plane alone: the real node is one per machine (test_real_node.py has it)
    )
    try:
        out = subprocess.run(
            [str(ROOT / "scripts/cluster-up.sh")], env=env, capture_output=True, text=True, timeout=900
        )
        if out.returncode != 0:
            # the script's stderr holds the failing component's log tail: show it, or CI says only "exit status 1"
            pytest.fail(
                f"scripts/cluster-up.sh exited {out.returncode} (ports {base}-{base + 4}, state in {d}):\n"
                f"{out.stderr[-6000:]}",
                pytrace=False,
            )
        kubeconfig = out.stdout.strip().splitlines()[-1].split("=", 1)[1]
        yield {"kubeconfig": kubeconfig, "dir": d}
    finally:
        subprocess.run([str(ROOT / "scripts/cluster-down.sh")], env=env, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def api(control_plane):
    from kubernetes import client, config

    os.environ["KUBECONFIG"] = control_plane["kubeconfig"]
    config.load_kube_config(config_file=control_plane["kubeconfig"])
    return client.ApiClient()


GPU = "nvidia.com/gpu"
NODES = [
    fake_node("t4-1", "t4", {f"{GPU}.product": "Tesla-T4", f"{GPU}.compute.major": "7", f"{GPU}.compute.minor": "5"}),
    fake_node(
        "h100-1",
        "h100",
        {
            f"{GPU}.product": "NVIDIA-H100-80GB-HBM3",
            f"{GPU}.compute.major": "9",
            f"{GPU}.compute.minor": "0",
            f"{GPU}.memory": "81559",
        },
    ),
    fake_node("a10g-1", "a10g", {f"{GPU}.product": "NVIDIA-A10G"}),  # product label only -> 8.6
    fake_node("bare-1", "bare", {}),  # nothing -> NVML probe
    # a mixed pool: T4 and H100 under one label
    fake_node(
        "mixed-t4",
        "mixed",
        {f"{GPU}.product": "Tesla-T4", f"{GPU}.compute.major": "7", f"{GPU}.compute.minor": "5"},
        gpus=2,
    ),
    fake_node(
        "mixed-h100",
        "mixed",
        {f"{GPU}.product": "NVIDIA-H100-80GB-HBM3", f"{GPU}.compute.major": "9", f"{GPU}.compute.minor": "0"},
        gpus=4,
    ),
    # GKE: GPU nodes tainted nvidia.com/gpu=present:NoSchedule (ExtendedResourceToleration is not enabled here)
    fake_node(
        "gke-l4-1",
        "gke",
        {f"{GPU}.product": "NVIDIA-L4", f"{GPU}.compute.major": "8", f"{GPU}.compute.minor": "9"},
        taints=[{"key": GPU, "value": "present", "effect": "NoSchedule"}],
    ),
    # "A10" must select the A10 and not the A100 (which has more GPUs, so a substring match would pin to it)
    fake_node(
        "ampere-a100",
        "ampere",
        {f"{GPU}.product": "NVIDIA-A100-SXM4-80GB", f"{GPU}.compute.major": "8", f"{GPU}.compute.minor": "0"},
    ),
    fake_node(
        "ampere-a10",
        "ampere",
        {f"{GPU}.product": "NVIDIA-A10", f"{GPU}.compute.major": "8", f"{GPU}.compute.minor": "6"},
        gpus=2,
    ),
    # a right-sized pool: one GPU, so a rollout that surges can never schedule its new pod
    fake_node(
        "full-1",
        "full",
        {f"{GPU}.product": "Tesla-T4", f"{GPU}.compute.major": "7", f"{GPU}.compute.minor": "5"},
        gpus=1,
    ),
]


@pytest.fixture(scope="session")
def gpu_nodes(api):
    from kubernetes import client

    core = client.CoreV1Api(api)
    for node in NODES:
        core.create_node(node)
    return [n["metadata"]["name"] for n in NODES]


OPERATOR_ENV = {
    "KUBEWHISPER_RESYNC_SECONDS": "2",
    "KUBEWHISPER_LEASE_NAMESPACE": "default",
    "KUBEWHISPER_LEASE_DURATION_SECONDS": "6",
    "KUBEWHISPER_PROBE_TIMEOUT_SECONDS": "120",
    "KUBEWHISPER_DEFAULT_IMAGE": "ghcr.io/kubewhisper/kubewhisper-inference:test",
}


@contextlib.contextmanager
def run_operator():
    """The real operator (whisper_operator.handlers) in this process, via kopf's own test runner."""
    from kopf.testing import KopfRunner

    saved = {k: os.environ.get(k) for k in OPERATOR_ENV}
    os.environ.update(OPERATOR_ENV)
    try:
        with KopfRunner(
            ["run", "--standalone", "--all-namespaces", "-m", "whisper_operator.handlers"], timeout=60
        ) as runner:
            yield runner
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert runner.exception is None, runner.exception


@pytest.fixture(scope="module")
def operator(gpu_nodes):
    with run_operator() as runner:
        yield runner


@pytest.fixture
def namespace(api):
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    # pods are admitted only once the namespace's default ServiceAccount exists
    core = client.CoreV1Api(api)
    deadline = time.time() + 30
    while time.time() < deadline:
        if any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items):
            break
        time.sleep(0.2)
    return name
