"""Benchmark deployments: any OpenAI-compatible transcription endpoint, with the audio sets of bench/audio_sets.py.

    BENCH_URL=http://whisper-cpu.default.svc:8080 [BENCH_MODEL=whisper] \\
    [BENCH_PEER_URL=http://speaches.default.svc:8000 BENCH_PEER_MODEL=Systran/faster-whisper-base] \\
    [BENCH_AUDIO=dir of NAME.wav|flac + NAME.txt] [BENCH_API_KEY=...] [BENCH_CONCURRENCY=1,8] python bench/remote.py

A URL is the server's base (its status.url for a WhisperEndpoint); /v1/audio/transcriptions is appended unless the
URL already ends in it. Writes the table (RTFx, p50/p95, mean WER; ratio to the peer when one is given) to stdout
and to BENCH_OUT (default bench/results/remote.md). Standard library plus numpy and soundfile only: it runs in the
inference image (bench/job.yaml).
"""

from __future__ import annotations

import io
import json
import os
import sys
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

from audio_sets import RATE, Item, load_sets


class HttpTarget:
    def __init__(self, url: str, model: str, api_key: str | None = None, language: str = "en", **fields: str):
        url = url.rstrip("/")
        self.url = url if url.endswith("/audio/transcriptions") else url + "/v1/audio/transcriptions"
        self.model, self.api_key, self.language = model, api_key, language
        # more form fields sent with every request (response_format=verbose_json, chunking_strategy=auto, ...)
        self.fields = {"response_format": "json", **fields}

    def transcribe(self, item: Item) -> str:
        import soundfile as sf

        buf = io.BytesIO()
        sf.write(buf, item.samples, RATE, format="WAV", subtype="PCM_16")
        boundary = uuid.uuid4().hex
        fields = {"model": self.model, "language": self.language, "temperature": "0", **self.fields}
        body = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        )
        body += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{item.name}.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        body += buf.getvalue() + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=3600) as r:
            return str(json.loads(r.read())["text"])


def vm_hwm_mib(pid: int) -> int | None:
    """Peak resident memory of a local process (VmHWM), MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def main() -> None:
    import cpu_engines

    url = os.environ.get("BENCH_URL")
    if not url:
        sys.exit("set BENCH_URL to the server to measure (e.g. a WhisperEndpoint's status.url)")
    audio = os.environ.get("BENCH_AUDIO")
    if audio:
        directory = Path(audio)
    else:
        directory = Path(cpu_engines.script("fixtures.sh"))
    key = os.environ.get("BENCH_API_KEY")
    sets = load_sets(directory)
    targets = {f"target {url}": HttpTarget(url, os.environ.get("BENCH_MODEL", "whisper"), key)}
    if peer := os.environ.get("BENCH_PEER_URL"):
        model = os.environ.get("BENCH_PEER_MODEL", "whisper")
        targets[f"peer {peer}"] = HttpTarget(peer, model, os.environ.get("BENCH_PEER_API_KEY", key))
    rows = {name: {"results": cpu_engines.run_all(t.transcribe, sets)} for name, t in targets.items()}
    baseline = list(rows)[-1]  # the peer when there is one: ratios are target / peer
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = f"# Deployments, {when}, from {cpu_engines.machine()}\n\n{cpu_engines.table(rows, baseline)}\n"
    out = Path(os.environ.get("BENCH_OUT", Path(__file__).resolve().parent / "results" / "remote.md"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(report)


if __name__ == "__main__":
    main()
