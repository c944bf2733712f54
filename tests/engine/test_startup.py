"""Start-up failures end the process with a clear message instead of a server that never gets ready."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import free_port

pytestmark = pytest.mark.engine


def run_server(**env: str) -> subprocess.CompletedProcess:
    full = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "whisper_inference"], env=full, capture_output=True, text=True, timeout=300
    )


def test_bad_setting_exits_2_naming_the_variable():
    r = run_server(MODEL_ID="/models/x", DTYPE="int4")
    assert r.returncode == 2 and "DTYPE" in r.stderr and "int4" in r.stderr


def test_missing_model_exits_1(tmp_path):
    r = run_server(MODEL_ID=str(tmp_path / "no-such-model"), HF_HUB_OFFLINE="1")
    assert r.returncode == 1, r.stderr[-2000:]
    assert "engine failed to start" in r.stderr
