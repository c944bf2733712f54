"""The images as built by scripts/image.sh (make image): their configuration and programs, run for real.

The `image` tier: scripts/image.sh builds (or finds cached) the CPU inference image, the operator image and the model
image, with buildah here (Docker when an engine answers); each test reads an image's configuration or runs a command
in it as the user the pods run as. Nothing is mocked: the commands run in the images' own root filesystems.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ROOT, script_output

pytestmark = pytest.mark.image

CACHE = Path(os.environ.get("KUBEWHISPER_CACHE", Path.home() / ".cache" / "kubewhisper"))
# what the operator may mount writable volumes on (emptyDirs) under a read-only root filesystem
WRITABLE = ("/tmp", "/home/whisper/.cache", "/models")


def docker_engine() -> bool:
    return bool(shutil.which("docker")) and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def buildah(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    root = CACHE / "buildah"
    cmd = ["buildah", "--root", f"{root}/root", "--runroot", f"{root}/runroot", "--storage-driver", "overlay", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """cpu/operator/model -> image name, built by scripts/image.sh (cached: nothing rebuilt when unchanged)."""
    refs = script_output("image.sh", "cpu", "operator", "model")[-3:]
    return dict(zip(("cpu", "operator", "model"), refs, strict=True))


def config(ref: str) -> dict:
    """The image's OCI/Docker runtime config: User, Env, Entrypoint, Cmd, StopSignal, Labels, WorkingDir."""
    if docker_engine():
        out = subprocess.run(["docker", "image", "inspect", ref], check=True, capture_output=True, text=True).stdout
        return json.loads(out)[0]["Config"]
    return json.loads(buildah("inspect", "--type", "image", ref).stdout)["OCIv1"]["config"]


def run_in(ref: str, *argv: str, user: str = "10001", volumes: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """argv in a container of the image, as `user`, with the image's env and working dir."""
    if docker_engine():
        vols = [a for v in volumes for a in ("-v", v)]
        cmd = ["docker", "run", "--rm", "--user", user, *vols, "--entrypoint", argv[0], ref, *argv[1:]]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    c = buildah("from", "--pull=never", ref).stdout.strip().splitlines()[-1]
    try:
        vols = [a for v in volumes for a in ("-v", v)]
        return buildah("run", "--isolation", "chroot", "--user", user, *vols, c, "--", *argv, check=False)
    finally:
        buildah("rm", c)


def env_of(ref: str) -> dict[str, str]:
    return dict(e.split("=", 1) for e in config(ref)["Env"])


def test_inference_image_config(images):
    cfg = config(images["cpu"])
    assert cfg["User"] == "10001:10001"
    # tini is PID 1: it forwards SIGTERM to the server and reaps the compiler's subprocesses
    assert cfg["Entrypoint"] == ["tini", "--", "python", "-m", "whisper_inference"]
    assert cfg.get("StopSignal") == "SIGTERM"
    assert cfg["Labels"]["org.opencontainers.image.title"] == "kubewhisper-inference"
    env = env_of(images["cpu"])
    assert env["HOME"] == "/home/whisper" and env["PORT"] == "8080"


def test_inference_image_writes_only_under_mountable_dirs(images):
    """Every directory a library writes to at run time is set by env to a path under a volume the operator mounts,
    so the root filesystem can be read-only (README "Images")."""
    env = env_of(images["cpu"])
    writable = ["HOME", "TMPDIR", "HF_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "NUMBA_CACHE_DIR"]
    writable += ["TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "VLLM_CACHE_ROOT", "VLLM_CONFIG_ROOT"]
    assert env["HOME"] == "/home/whisper"  # its only writable part is .cache (below)
    for name in writable[1:]:
        assert any(env[name] == d or env[name].startswith(d + "/") for d in WRITABLE), f"{name}={env[name]}"


def test_inference_image_runs_as_its_user(images):
    """UID 10001 with a passwd entry (kubelet passes only the uid; the group comes from /etc/passwd), a writable
    home cache, and the three engines' imports."""
    p = run_in(
        images["cpu"],
        "sh",
        "-c",
        'id -u; id -g; getent passwd 10001 | cut -d: -f6; touch "$XDG_CACHE_HOME/probe" && echo writable; '
        "python -c \"import whisper_inference, vllm, vllm._C, ctranslate2; print('imports ok')\"; "
        'g++ --version >/dev/null && python -c "import os, sysconfig; '
        "assert os.path.exists(sysconfig.get_paths()['include'] + '/Python.h')\" && echo compiler",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    # vllm._C needs libnuma; vLLM's sampler is torch.compile'd, which needs g++ and Python.h on CPU
    assert p.stdout.split() == ["10001", "10001", "/home/whisper", "writable", "imports", "ok", "compiler"], p.stdout


def test_inference_image_has_tini_and_the_server(images):
    p = run_in(images["cpu"], "sh", "-c", "command -v tini && python -m pip show kubewhisper")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Version: 0.1.0" in p.stdout


def test_operator_image(images):
    cfg = config(images["operator"])
    assert cfg["User"] == "10001:10001"
    assert cfg["Entrypoint"][:2] == ["kopf", "run"]
    p = run_in(images["operator"], "sh", "-c", 'id -g; python -c "import whisper_operator, kopf" && kopf run --help')
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.split()[0] == "10001" and "--standalone" in p.stdout
    # and no inference stack in it
    p = run_in(images["operator"], "python", "-c", "import vllm")
    assert p.returncode != 0


@pytest.fixture
def models_volume(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "models"
    d.mkdir()
    d.chmod(0o777)  # an emptyDir as kubelet makes it: root's, mode 0777
    yield d


def test_model_image_copies_the_model_into_a_volume(images, models_volume):
    """The init container's default command copies /model/whisper-base (HF files and ctranslate2/) into /models."""
    cfg = config(images["model"])
    assert cfg["User"] == "10001:10001" and cfg["Cmd"] == ["cp", "-R", "/model/.", "/models/"]
    p = run_in(images["model"], *cfg["Cmd"], volumes=(f"{models_volume}:/models",))
    assert p.returncode == 0, p.stdout + p.stderr
    m = models_volume / "whisper-base"
    served = Path(script_output("models.sh", "base")[-1])
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (m / f).read_bytes() == (served / f).read_bytes(), f
    assert (m / "ctranslate2" / "model.bin").stat().st_size > 100_000_000
    assert m.stat().st_uid == 10001 and (m / "model.safetensors").stat().st_uid == 10001


def test_image_names_follow_the_makefile(images):
    makefile = (ROOT / "Makefile").read_text()
    assert "IMAGE ?= ghcr.io/kubewhisper/kubewhisper" in makefile and "TAG ?= 0.1.0" in makefile
    assert images == {
        "cpu": "ghcr.io/kubewhisper/kubewhisper-inference:0.1.0-cpu",
        "operator": "ghcr.io/kubewhisper/kubewhisper-operator:0.1.0",
        "model": "ghcr.io/kubewhisper/kubewhisper-model-whisper-base:0.1.0",
    }
