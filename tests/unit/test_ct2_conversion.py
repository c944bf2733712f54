"""engine/ct2_model.py: a Hugging Face checkpoint is converted for CTranslate2 in a child process, so the serving
process never imports the converter's transformers and torch; the converted directory holds the tokenizer the
engine reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from whisper_inference.engine.ct2_model import find_or_convert, is_ct2_model
from whisper_inference.engine.tokenizer import WhisperTokenizer

CONVERT = """
import json, sys
from pathlib import Path
from whisper_inference.engine.ct2_model import find_or_convert
out = find_or_convert(sys.argv[1], cache=Path(sys.argv[2]))
print(json.dumps([str(out), [m for m in ("torch", "transformers") if m in sys.modules]]))
"""


@pytest.mark.weights
def test_conversion_runs_in_a_child_and_keeps_the_tokenizer(model_tiny_en, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", CONVERT, str(model_tiny_en), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ,
    )
    assert done.returncode == 0, done.stderr
    out, heavy = json.loads(done.stdout.splitlines()[-1])
    assert heavy == []
    assert is_ct2_model(tmp_path / out) and (tmp_path / out / "tokenizer.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(out)]  # no temporary directory left
    assert len(WhisperTokenizer.from_model(str(tmp_path / out))) == 51864  # tiny.en's vocabulary


@pytest.mark.unit
def test_a_failed_conversion_names_the_model_and_leaves_nothing(tmp_path):
    model = tmp_path / "not-whisper"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="converting .*not-whisper to CTranslate2 failed"):
        find_or_convert(str(model), cache=cache)
    assert list(cache.iterdir()) == []


@pytest.mark.unit
def test_a_model_directory_without_tokenizer_json_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        WhisperTokenizer.from_model(str(tmp_path), tmp_path / "absent")
