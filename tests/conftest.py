"""Shared fixtures: cached models and speech (built by the project's own scripts), real servers."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def script_output(*args: str) -> list[str]:
    out = subprocess.run(
        [str(ROOT / "scripts" / args[0]), *args[1:]], check=True, capture_output=True, text=True
    ).stdout
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


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port_block(n: int = 1) -> int:
    """A base port with n consecutive ports free on 127.0.0.1, chosen outside the kernel's ephemeral range.

    Not bind(0): that hands out ephemeral ports, and Linux gives bind(0) odd ports and connect() even ones, so
    base+1 of such a block is exactly the source port the next outgoing connection (curl polling the API server,
    kube-apiserver dialling etcd) may take before our process binds it: "address already in use", a flaky start.
    """
    lo, hi = _ephemeral_range()
    start, stop = (max(1024, lo - 12000), lo) if lo > 3048 else (hi + 1, 65535)
    for _ in range(500):
        base = random.randrange(start, stop - n)
        held = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports in {start}-{stop}")


def free_port() -> int:
    return free_port_block(1)


class ServerProcess:
    """`python -m whisper_inference` in a subprocess, exactly as the image runs it."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PYTHONPATH": f"{ROOT / 'inference'}:{ROOT / 'operator'}",
            **env,
        }
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "whisper_inference"],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

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
