"""Shared fixtures: cached models and speech (built by the project's own scripts), real servers."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def script_output(*args: str) -> list[str]:
    out = subprocess.run([str(ROOT / "scripts" / args[0]), *args[1:]], check=True,
                         capture_output=True, text=True).stdout
    return out.strip().splitlines()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return Path(script_output("fixtures.sh")[-1])


@pytest.fixture(scope="session")
def model_tiny_en() -> Path:
    return Path(script_output("models.sh", "tiny.en")[-1])


@pytest.fixture(scope="session")
def model_base() -> Path:
    return Path(script_output("models.sh", "base")[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m whisper_inference` in a subprocess, exactly as the image runs it."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port),
                    "PYTHONPATH": f"{ROOT / 'inference'}:{ROOT / 'operator'}", **env}
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "whisper_inference"], env=full_env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"server not ready in {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    started: list[ServerProcess] = []

    def start(model: Path, **env: str) -> ServerProcess:
        log = tmp_path_factory.mktemp("server") / "server.log"
        server = ServerProcess({"MODEL_ID": str(model), **env}, log)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def tiny_server(start_server, model_tiny_en):
    return start_server(model_tiny_en, SERVED_MODEL_NAME="whisper-tiny.en", MAX_AUDIO_SECONDS="120")


@pytest.fixture(scope="session")
def base_server(start_server, model_base):
    return start_server(model_base, SERVED_MODEL_NAME="whisper-base")
