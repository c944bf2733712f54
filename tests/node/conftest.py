"""Session fixtures for the real-node tests: one local cluster *with* a real node (scripts/cluster-up.sh: control
plane, containerd + runc + CNI + kubelet + kube-proxy, the cluster resolver) in a temp dir on free ports, the
project's images built and loaded into the node's containerd (scripts/image.sh), helm and kubectl.

A machine runs one real node at a time (kube-proxy's iptables chains are global), so every test that needs pods
to run shares this one cluster. Everything is stopped by PID at session end, even when tests fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import ROOT, free_port_block, script_output


class Kube:
    """kubectl and helm against one cluster; JSON in, JSON out."""

    def __init__(self, env: dict[str, str], kubeconfig: str, cluster_dir: Path) -> None:
        self.env = env
        self.kubeconfig = kubeconfig
        self.dir = cluster_dir

    def run(self, *args: str, check: bool = True, timeout: float = 600, stdin: str | None = None) -> str:
        out = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout, input=stdin, cwd=ROOT
        )
        if check and out.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
            )
        return out.stdout

    def attempt(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """A command that may fail on purpose: its exit status, stdout and stderr."""
        return subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=300, input=stdin, cwd=ROOT
        )

    def kubectl(self, *args: str, **kw: Any) -> str:
        return self.run("kubectl", *args, **kw)

    def helm(self, *args: str, **kw: Any) -> str:
        return self.run("helm", *args, **kw)

    def get(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", *args, "-o", "json")))

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float, diagnose: str = "") -> Any:
        """Poll until predicate() is truthy; on timeout fail with `what` and the cluster's view of it."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = predicate()
                if value:
                    return value
            except (AssertionError, subprocess.SubprocessError, KeyError, IndexError, ValueError) as e:
                last_error = e
            time.sleep(0.5)
        detail = self.kubectl(*diagnose.split(), check=False) if diagnose else ""
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})\n{detail}")


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    d = tmp_path_factory.mktemp("node-cluster")
    base = free_port_block(5)
    tools = script_output("helm.sh")[-1]
    env = dict(
        os.environ,
        KUBEWHISPER_CLUSTER_DIR=str(d),
        KUBEWHISPER_APISERVER_PORT=str(base),
        KUBEWHISPER_ETCD_PORT=str(base + 3),
        PATH=f"{tools}:{os.environ['PATH']}",
    )
    try:
        out = subprocess.run(
            [str(ROOT / "scripts/cluster-up.sh")], env=env, capture_output=True, text=True, timeout=1800
        )
        if out.returncode != 0:
            pytest.fail(
                f"scripts/cluster-up.sh exited {out.returncode} (state in {d}):\n{out.stderr[-6000:]}", pytrace=False
            )
        kubeconfig = out.stdout.strip().splitlines()[-1].split("=", 1)[1]
        env["KUBECONFIG"] = kubeconfig
        # the project's images, built (cached) and loaded into this node's containerd
        img = subprocess.run([str(ROOT / "scripts/image.sh")], env=env, capture_output=True, text=True, timeout=2400)
        if img.returncode != 0:
            pytest.fail(f"scripts/image.sh exited {img.returncode}:\n{img.stderr[-6000:]}", pytrace=False)
        yield Kube(env, kubeconfig, d)
    finally:
        subprocess.run([str(ROOT / "scripts/cluster-down.sh"), "--purge"], env=env, capture_output=True, timeout=300)
