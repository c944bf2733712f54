"""The images loaded into a containerd and run as containers, as a node runs them (no kubelet needed).

A private containerd (its state and socket in a temp dir, its image store in $CACHE/containerd-image-tests so that an
unchanged image is not imported again next time; stopped by PID at the end) receives the images
through scripts/image.sh's loading path (KUBEWHISPER_CONTAINERD_SOCKET), the one `make image` uses for the local
cluster's node. The CPU inference image then runs as a real container with runc: read-only root filesystem, writable
directories only where the operator mounts emptyDirs, the model copied in by the model image (as an init container
does), host network. It must serve a
44.1 kHz upload (librosa's resampler, numba's cache), run as 10001 under tini as PID 1, and stop on SIGTERM.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import ROOT, free_port, wer

CACHE = Path(os.environ.get("KUBEWHISPER_CACHE", Path.home() / ".cache" / "kubewhisper"))

pytestmark = pytest.mark.image

REFS = {
    "cpu": "ghcr.io/kubewhisper/kubewhisper-inference:0.1.0-cpu",
    "operator": "ghcr.io/kubewhisper/kubewhisper-operator:0.1.0",
    "model": "ghcr.io/kubewhisper/kubewhisper-model-whisper-base:0.1.0",
}


def wait_for(what: str, check, timeout: float) -> None:
    """Poll `check` until it returns true; fail naming `what` after `timeout` s (a bound for a hung step, not a
    speed assertion)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    assert shutil.which("containerd") and shutil.which("runc"), (
        "containerd/runc missing: apt-get install containerd runc"
    )
    d = tmp_path_factory.mktemp("ctrd")
    sock = d / "containerd.sock"
    (d / "config.toml").write_text(
        f"""version = 2
root = "{CACHE / "containerd-image-tests"}"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"""
    )
    log = open(d / "containerd.log", "wb")  # closed at teardown
    proc = subprocess.Popen(
        ["containerd", "--config", str(d / "config.toml")], stdout=log, stderr=log, start_new_session=True
    )
    ctr = ["ctr", "--address", str(sock), "-n", "k8s.io"]

    def up() -> bool:
        assert proc.poll() is None, (d / "containerd.log").read_text()[-2000:]
        return subprocess.run([*ctr, "version"], capture_output=True).returncode == 0

    wait_for("containerd answering", up, 30)
    try:
        yield {"ctr": ctr, "socket": str(sock), "dir": d}
    finally:
        for line in subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True).stdout.split():
            subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", line], capture_output=True)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
        subprocess.run(["umount", "-R", str(d / "state")], capture_output=True)


@pytest.fixture(scope="module")
def loaded(containerd: dict) -> dict:
    env = {**os.environ, "KUBEWHISPER_CONTAINERD_SOCKET": containerd["socket"]}
    p = subprocess.run(
        [str(ROOT / "scripts/image.sh"), "cpu", "operator", "model"], env=env, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return {"first": p, "env": env}


def test_images_load_into_containerd_once(containerd, loaded):
    out = subprocess.run([*containerd["ctr"], "images", "ls"], check=True, capture_output=True, text=True).stdout
    for ref in REFS.values():
        line = next((ln for ln in out.splitlines() if ln.startswith(ref + " ")), "")
        assert "io.kubewhisper.id=" in line, f"{ref} not imported:\n{out}"
        assert f"{ref} loaded into" in loaded["first"].stderr or f"{ref} already in" in loaded["first"].stderr
    # unchanged images are not exported and imported again
    again = subprocess.run(
        [str(ROOT / "scripts/image.sh"), "operator", "model"], env=loaded["env"], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert f"{REFS['operator']} already in" in again.stderr and f"{REFS['model']} already in" in again.stderr


def test_inference_container_read_only_root_runs_as_10001_and_stops_on_sigterm(containerd, loaded, fixtures_dir):
    ctr = containerd["ctr"]
    port = free_port()
    name = f"kw-inference-{port}"
    logf = containerd["dir"] / f"{name}.log"
    # emptyDirs as kubelet makes them: empty host directories, mode 0777, bind-mounted
    volumes: dict[str, list[str]] = {}
    for dst in ("/tmp", "/home/whisper/.cache", "/models"):
        src = containerd["dir"] / f"{name}-{dst.strip('/').replace('/', '-')}"
        src.mkdir()
        src.chmod(0o777)
        volumes[dst] = ["--mount", f"type=bind,src={src},dst={dst},options=rbind:rw"]
    # the init container: the model image's default command copies the model into the models volume
    init = subprocess.run(
        [*ctr, "run", "--rm", "--read-only", *volumes["/models"], REFS["model"], f"{name}-init"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    subprocess.run(
        [
            *ctr,
            "run",
            "-d",
            "--net-host",
            "--read-only",
            "--log-uri",
            f"file://{logf}",
            *(arg for mount in volumes.values() for arg in mount),
            "--env",
            "MODEL_ID=/models/whisper-base",
            "--env",
            "SERVED_MODEL_NAME=whisper-base",
            "--env",
            "ENGINE=ctranslate2",
            "--env",
            "HOST=127.0.0.1",
            "--env",
            f"PORT={port}",
            REFS["cpu"],
            name,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    url = f"http://127.0.0.1:{port}"

    def running() -> bool:
        return f"{name} " in subprocess.run([*ctr, "tasks", "ls"], capture_output=True, text=True).stdout

    def ready() -> bool:
        assert "RUNNING" in subprocess.run([*ctr, "tasks", "ls"], capture_output=True, text=True).stdout, (
            logf.read_text()[-3000:] if logf.exists() else "no log"
        )
        try:
            return httpx.get(url + "/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("the server in the container ready", ready, 600)
        # PID 1 is tini; the server runs as 10001:10001
        ps = subprocess.run(
            [*ctr, "tasks", "exec", "--exec-id", "probe", name, "sh", "-c", "cat /proc/1/comm; id -u; id -g"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        assert ps == ["tini", "10001", "10001"], ps
        # a 44.1 kHz upload goes through librosa's resampler (numba compiles and caches under NUMBA_CACHE_DIR)
        import numpy as np
        import soundfile as sf

        audio, rate = sf.read(fixtures_dir / "jfk.wav", dtype="float32")
        t = np.arange(int(len(audio) * 44100 / rate)) * rate / 44100
        resampled = np.interp(t, np.arange(len(audio)), audio).astype("float32")
        buf = io.BytesIO()
        sf.write(buf, resampled, 44100, format="WAV")
        r = httpx.post(
            url + "/v1/audio/transcriptions",
            files={"file": ("jfk-44k.wav", buf.getvalue(), "audio/wav")},
            data={"model": "whisper-base"},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert wer((fixtures_dir / "jfk.txt").read_text(), r.json()["text"]) < 0.15, r.text
        # SIGTERM (the image's STOPSIGNAL) reaches the server through tini: it shuts down by itself
        subprocess.run([*ctr, "tasks", "kill", "-s", "SIGTERM", name], check=True, capture_output=True)
        wait_for("the container stopping after SIGTERM", lambda: "STOPPED" in _status(ctr, name), 60)
        assert "Finished server process" in logf.read_text() or "Shutting down" in logf.read_text()
    finally:
        if running():
            subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", name], capture_output=True)
            wait_for("the container killed", lambda: "STOPPED" in _status(ctr, name), 30)
        subprocess.run([*ctr, "tasks", "rm", name], capture_output=True)
        subprocess.run([*ctr, "containers", "rm", name], capture_output=True)


def _status(ctr: list[str], name: str) -> str:
    out = subprocess.run([*ctr, "tasks", "ls"], capture_output=True, text=True).stdout
    return next((ln for ln in out.splitlines() if ln.startswith(name + " ")), "")
