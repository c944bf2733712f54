"""The server as the image runs it: a UID with no passwd entry, HOME=/nonexistent, nothing writable but the cache
directories the image points at (HOME, XDG_CACHE_HOME, NUMBA_CACHE_DIR, TRITON_CACHE_DIR, VLLM_CACHE_ROOT, TMPDIR).
A 44.1 kHz upload must decode, resample and transcribe there. The throwaway UID gets CAP_DAC_READ_SEARCH only so it
can read the venv and model under /root (mode 0700 here); it can write nothing the test did not hand it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import soundfile as sf
import soxr
from conftest import free_port

from helpers import wer

pytestmark = pytest.mark.engine
UID = 10002  # not 10001, so nothing on this machine owned by the image's UID can help
JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop to a UID")
def test_44k_upload_as_a_uid_with_no_home(model_tiny_en, fixtures_dir, tmp_path):
    # short: vLLM puts its ZeroMQ IPC sockets under TMPDIR, and a socket path has at most 107 bytes (pytest's
    # tmp_path grows with its run counter: /tmp/pytest-of-root/pytest-103/test_44k_... was one byte too long)
    writable = Path(tempfile.mkdtemp(prefix="kw-uid-"))
    os.chown(writable, UID, UID)
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "MODEL_ID": str(model_tiny_en),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "HOME": "/nonexistent",
        "XDG_CACHE_HOME": str(writable),
        "NUMBA_CACHE_DIR": str(writable / "numba"),
        "TRITON_CACHE_DIR": str(writable / "triton"),
        "VLLM_CACHE_ROOT": str(writable / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(writable / "inductor"),
        "TMPDIR": str(writable),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    drop = [
        "setpriv",
        f"--reuid={UID}",
        f"--regid={UID}",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [*drop, sys.executable, "-m", "whisper_inference"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        jfk, rate = sf.read(fixtures_dir / "jfk.wav", dtype="float32")
        sf.write(tmp_path / "jfk44k.wav", soxr.resample(jfk, rate, 44100), 44100)
        r = httpx.post(
            url + "/v1/audio/transcriptions",
            data={"model": "whisper"},
            files={"file": ("jfk44k.wav", (tmp_path / "jfk44k.wav").read_bytes())},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert wer(JFK, r.json()["text"]) < 0.15, r.json()
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
        shutil.rmtree(writable, ignore_errors=True)
