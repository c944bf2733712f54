"""Where the CTranslate2 engine finds its model: a CTranslate2 directory next to the HF one, or converted once.

The packaged checkpoints are CTranslate2 models to begin with (scripts/models.sh turns them into HF directories for
vLLM and keeps a CTranslate2 copy in `ctranslate2/`); any other HF Whisper model (a hub id, a mounted directory) is
converted with CTranslate2's own converter on first start and cached. The converter runs in a child process: it
imports transformers and torch, which the serving process never loads (their memory would stay with it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)
SUBDIR = "ctranslate2"


def is_ct2_model(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def conversion_cache() -> Path:
    """Beside the Hugging Face cache (HF_HOME, a writable volume in the image), else ~/.cache."""
    hf_home = os.environ.get("HF_HOME")
    base = Path(hf_home).parent if hf_home else Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return base / "kubewhisper-ctranslate2"


def source_digest(model_id: str) -> str:
    """Names a conversion after the model: its path and the size and time of its files (or the hub id)."""
    h = hashlib.sha256(model_id.encode())
    path = Path(model_id)
    if path.is_dir():
        for f in sorted(path.iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:12]


def find_or_convert(model_id: str, cache: Path | None = None) -> Path:
    path = Path(model_id)
    for candidate in (path, path / SUBDIR):
        if is_ct2_model(candidate):
            return candidate
    dst = (cache or conversion_cache()) / f"{path.name or 'model'}-{source_digest(model_id)}"
    if is_ct2_model(dst):
        return dst
    log.info("converting %s to CTranslate2 in %s (once, in a child process)", model_id, dst)
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", __name__, model_id, str(tmp)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"converting {model_id} to CTranslate2 failed: {done.stderr.strip()[-2000:]}")
    if not is_ct2_model(dst):  # another process may have finished first
        tmp.replace(dst)
    return dst


def convert(model_id: str, out: Path) -> None:
    """The child process's work: the model as float16 CTranslate2, and its tokenizer.json beside it (what the
    engine's tokenizer and faster-whisper, bench/cpu_engines.py, read from the directory)."""
    import ctranslate2

    path = Path(model_id)
    copy = ["tokenizer.json"] if (path / "tokenizer.json").is_file() else None
    converter = ctranslate2.converters.TransformersConverter(model_id, copy_files=copy)
    converter.convert(str(out), quantization="float16", force=True)
    if not (out / "tokenizer.json").is_file():  # a hub model, or a directory with only the slow tokenizer's files
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(model_id).backend_tokenizer.save(str(out / "tokenizer.json"))


if __name__ == "__main__":
    convert(sys.argv[1], Path(sys.argv[2]))
