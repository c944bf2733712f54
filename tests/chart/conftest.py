"""Fixtures for the chart tier: helm/kubectl from scripts/helm.sh, rendering helpers, and a control plane.

The control plane comes from helper code of the operator's cluster tier (tests/cluster/conftest.py: the same
scripts/cluster-up.sh on free ports, stopped by PID at session end). It is a separate instance on purpose: these
tests install cluster-scoped RBAC, fake GPU nodes of their own and run an operator under leader election, which
must not leak into the operator tier's assumptions about its nodes (about 7 s to start).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from cluster.conftest import control_plane  # noqa: F401  (a fixture: re-registered here for tests/chart)

from helpers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubewhisper"


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    out = subprocess.run([str(ROOT / "scripts" / "helm.sh")], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


class Helm:
    """helm and kubectl with their own state (helm's homes, values files) under `home`, a pytest tmp dir."""

    def __init__(self, bin_dir: Path, home: Path, kubeconfig: str | None = None):
        self.bin_dir, self.home, self.kubeconfig = bin_dir, home, kubeconfig

    def env(self) -> dict:
        env = dict(
            os.environ,
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_DATA_HOME=str(self.home / "data"),
        )
        if self.kubeconfig:
            env["KUBECONFIG"] = self.kubeconfig
        else:
            env.pop("KUBECONFIG", None)
        return env

    def run(
        self, tool: str, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [str(self.bin_dir / tool), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def helm(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("helm", *args, **kw)

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("kubectl", *args, **kw)

    def template(
        self,
        values: dict | None = None,
        *args: str,
        release: str = "kw",
        namespace: str = "kubewhisper",
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        vf = self.values_file(values)
        return self.helm("template", release, str(CHART), "-n", namespace, "-f", str(vf), *args, check=check)

    def values_file(self, values: dict | None) -> Path:
        vf = self.home / f"values-{uuid.uuid4().hex[:8]}.yaml"
        vf.write_text(yaml.safe_dump(values or {}))
        return vf

    def render(self, values: dict | None = None, *args: str, **kw) -> list[dict]:
        return [d for d in yaml.safe_load_all(self.template(values, *args, **kw).stdout) if d]


@pytest.fixture(scope="session")
def helm(bin_dir, tmp_path_factory) -> Helm:
    return Helm(bin_dir, tmp_path_factory.mktemp("helm"))


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in hits]}"
    return hits[0]


# --- cluster tier --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cluster(control_plane, bin_dir, tmp_path_factory) -> Helm:  # noqa: F811
    """helm/kubectl bound to the chart tier's control plane, with a T4 and an H100 fake GPU node."""
    h = Helm(bin_dir, tmp_path_factory.mktemp("helm-cluster"), control_plane["kubeconfig"])
    nodes = yaml.safe_load((ROOT / "operator/examples/fake-gpu-nodes.yaml").read_text())
    nodes["items"] = [n for n in nodes["items"] if n["metadata"]["labels"].get("pool") in ("t4", "h100")]
    h.kubectl("apply", "-f", "-", input=yaml.safe_dump(nodes))
    return h


@pytest.fixture
def namespace(cluster):
    name = f"c-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    deadline = time.time() + 30  # pods are admitted only once the namespace's default ServiceAccount exists
    while cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode != 0:
        assert time.time() < deadline, "default ServiceAccount never appeared"
        time.sleep(0.2)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# --- the inference image's program, run here -----------------------------------------------------------------------


def dockerfile(name: str) -> dict[str, list[str]]:
    """Instruction -> raw arguments (continuations joined, comments dropped) of Dockerfile.<name>."""
    import re

    text = re.sub(r"\\\n", " ", (ROOT / f"Dockerfile.{name}").read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instr, _, rest = line.strip().partition(" ")
            out.setdefault(instr.upper(), []).append(rest.strip())
    return out


def dockerfile_bases(name: str) -> list[str]:
    """The base image of each FROM of Dockerfile.<name>, with the build args' defaults (ARG before the first FROM)
    substituted: what a build without --build-arg uses."""
    import re

    defaults: dict[str, str] = {}
    for args in dockerfile(name).get("ARG", []):
        key, _, value = args.partition("=")
        defaults.setdefault(key, value.strip('"'))
    return [re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], f.split()[0]) for f in dockerfile(name)["FROM"]]


def dockerfile_env(name: str) -> dict[str, str]:
    import shlex

    env = {}
    for args in dockerfile(name).get("ENV", []):
        for token in shlex.split(args):
            k, _, v = token.partition("=")
            env[k] = v
    return env


@pytest.fixture(scope="session")
def image_server(tmp_path_factory):
    """Dockerfile.inference's ENTRYPOINT with its ENV, here: `python` is this venv's, MODEL_ID the cached tiny.en,
    HOST/PORT local and HF_HOME writable (the only overrides; `docker run -e` would do the same)."""
    import json
    import sys

    model = (
        subprocess.run([str(ROOT / "scripts/models.sh"), "tiny.en"], check=True, capture_output=True, text=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    argv = json.loads(dockerfile("inference")["ENTRYPOINT"][-1])
    if argv[:2] == ["tini", "--"]:  # the image's PID 1 (reaps and forwards signals); the program follows
        argv = argv[2:]
    assert argv[0] == "python"
    d = tmp_path_factory.mktemp("image-server")
    image_env = {k: v for k, v in dockerfile_env("inference").items() if k not in ("HOST", "PORT")}  # local ones
    env = {**image_env, "MODEL_ID": model, "HF_HOME": str(d / "hf")}
    server = ServerProcess(env, d / "server.log", argv=[sys.executable, *argv[1:]])
    try:
        server.wait_ready()
        yield {"url": server.url, "port": server.port, "env": server.env, "argv": argv}
    finally:
        server.stop()


def run_test_pod_script(pod: dict, url: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """The chart's `helm test` container command, run here with its env, TRANSCRIBE_URL pointed at `url`."""
    import sys

    c = pod["spec"]["containers"][0]
    assert c["command"][0] == "python3"
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    env["TRANSCRIBE_URL"] = url + "/v1/audio/transcriptions"
    return subprocess.run(
        [sys.executable, *c["command"][1:], *c["args"]],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
