"""The one place for helpers shared by tests and benchmarks: paths, the cached artifacts' scripts, ports, a server
subprocess's lifecycle, WER, the JFK sentence and the real Whisper vocabulary ids.

Import as `from helpers import ...` (tests/ is on pytest's pythonpath) or `from tests.helpers import ...` (bench).
tests/conftest.py turns these into fixtures (fixtures_dir, model_tiny_en, model_base, start_server, ...).
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import httpx

from whisper_inference.engine.vocab import WhisperVocab

ROOT = Path(__file__).resolve().parents[1]

# the fields of a verbose_json segment, as OpenAI returns them
SEGMENT_FIELDS = {
    "id",
    "seek",
    "start",
    "end",
    "text",
    "tokens",
    "temperature",
    "avg_logprob",
    "compression_ratio",
    "no_speech_prob",
}
JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."

# The special-token ids of the real tokenizers, as WhisperVocab.from_tokenizer reads them from the converted
# checkpoints (the weights tier checks both against tiny.en and base: tests/unit/test_non_speech_tokens.py).
# Multilingual: every model but large-v3 (one more language shifts its ids after the languages by one);
# English-only: tiny.en, base.en, ...
VOCAB_MULTILINGUAL = WhisperVocab(
    sot=50258,
    eot=50257,
    transcribe=50359,
    translate=50358,
    startofprev=50361,
    notimestamps=50363,
    nospeech=50362,
    languages={"en": 50259, "de": 50261, "fr": 50265},
)
VOCAB_EN = WhisperVocab(
    sot=50257,
    eot=50256,
    transcribe=50358,
    translate=50357,
    startofprev=50360,
    notimestamps=50362,
    nospeech=50361,
    languages={},
)


def normalize(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces: what WER compares."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s']", " ", text.lower())).strip()


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(normalize(reference), normalize(hypothesis)))


def script_output(*args: str) -> list[str]:
    """Run scripts/<args[0]> (they print their result as the last stdout line); a failure names the script."""
    p = subprocess.run([str(ROOT / "scripts" / args[0]), *args[1:]], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"scripts/{' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout.strip().splitlines()


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


_PORT_LOCKS = Path(tempfile.gettempdir()) / "kubewhisper-ports"
_held_locks: list[IO[bytes]] = []  # held until this process exits: no other test session takes these ports


def free_port_block(n: int = 1) -> int:
    """A base port with n consecutive ports free on 127.0.0.1, chosen outside the kernel's ephemeral range, and
    reserved for this process's lifetime by a lock file per base port (so concurrent test sessions on one machine
    never pick the same block).

    Not bind(0): that hands out ephemeral ports, and Linux gives bind(0) odd ports and connect() even ones, so
    base+1 of such a block is exactly the source port the next outgoing connection (curl polling the API server,
    kube-apiserver dialling etcd) may take before our process binds it: "address already in use", a flaky start.
    """
    lo, hi = _ephemeral_range()
    start, stop = (max(1024, lo - 12000), lo) if lo > 3048 else (hi + 1, 65535)
    _PORT_LOCKS.mkdir(exist_ok=True)
    for _ in range(500):
        base = random.randrange(start, stop - n)
        locks: list[IO[bytes]] = []
        try:
            for p in range(base, base + n):
                f = open(_PORT_LOCKS / f"{p}.lock", "wb")
                locks.append(f)
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            for f in locks:
                f.close()
            continue
        _held_locks.extend(locks)
        return base
    raise RuntimeError(f"no {n} consecutive free ports in {start}-{stop}")


def free_port() -> int:
    return free_port_block(1)


class ServerProcess:
    """A server as a subprocess (default: `python -m whisper_inference` of this venv, exactly as the image runs it),
    on a free port given to it as $PORT; ready once `ready_path` answers 200; stopped by PID (its process group)."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        argv: Sequence[str] | None = None,
        ready_path: str = "/ready",
        port: int | None = None,
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.ready_path = ready_path
        self.env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), **env}
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            list(argv or [sys.executable, "-m", "whisper_inference"]),
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def wait_ready(self, timeout: float = 300) -> ServerProcess:
        """Poll until ready; fail at once (with the log) when the process exits, or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"server not ready in {timeout} s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
