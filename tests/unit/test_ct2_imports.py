"""A server with ENGINE=ctranslate2 never imports torch, transformers or vLLM (memory it would never use); only a
request for word timestamps loads torch, in the Aligner. Each check runs in a fresh interpreter: this test process
has imported them already."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit
HEAVY = ("torch", "transformers", "vllm")

# what `python -m whisper_inference` imports on its way to serving (engine start aside: it needs the weights)
CT2_SERVER = """
from whisper_inference.config import load_settings
from whisper_inference.api.app import create_app
from whisper_inference.api.server import uvicorn_config
import whisper_inference.__main__, whisper_inference.engine.ct2_engine, whisper_inference.transcriber
app = create_app(load_settings())
assert type(app.state.server.engine).__name__ == "CT2Engine"
uvicorn_config(app, load_settings())
"""


def heavy_modules_after(code: str, **env: str) -> list[str]:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "MODEL_ID": "unused-model", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.splitlines()[-1]))


def test_a_ctranslate2_server_imports_no_torch_transformers_or_vllm():
    assert heavy_modules_after(CT2_SERVER, ENGINE="ctranslate2") == []


def test_the_check_sees_torch_where_it_is_imported():
    """The vLLM engine's module imports torch (its timestamp rules): the probe above would report it."""
    assert "torch" in heavy_modules_after("import whisper_inference.engine.vllm_engine")
