"""A real engine failure: vLLM's EngineCore process is killed (SIGKILL) while a request and a stream run on it.
The request answers 500 engine_error, the stream ends with an `error` event, and the server exits non-zero so that
Kubernetes restarts it (before: 500 internal_error, a stream cut without an event, a process serving 500s)."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.engine


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                kids = [int(c) for c in (task / "children").read_text().split()]
                found += kids
                todo += kids
        except OSError:
            continue
    return found


def engine_core(pid: int) -> int:
    for p in descendants(pid):
        try:
            name = Path(f"/proc/{p}/comm").read_text() + Path(f"/proc/{p}/cmdline").read_text()
        except OSError:
            continue
        if "EngineCore" in name:
            return p
    raise AssertionError(f"no EngineCore process under {pid}: {descendants(pid)}")


def metric(server, name: str) -> float:
    for line in httpx.get(server.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_killed_engine_fails_requests_and_streams_honestly_and_exits_non_zero(
    start_server, model_tiny_en, fixtures_dir, tmp_path
):
    server = start_server(model_tiny_en, GRACE_PERIOD_SECONDS="5")
    jfk, rate = sf.read(fixtures_dir / "jfk.wav", dtype="float32")
    sf.write(tmp_path / "long.flac", np.tile(np.concatenate([jfk, np.zeros(rate // 2, np.float32)]), 48), rate)
    long = (tmp_path / "long.flac").read_bytes()  # 9 minutes: 18 windows, seconds of engine work
    results: dict[str, object] = {}
    first_delta = threading.Event()

    def request() -> None:
        results["request"] = httpx.post(
            server.url + "/v1/audio/transcriptions",
            data={"model": "whisper"},
            files={"file": ("long.flac", long)},
            timeout=300,
        )

    def stream() -> None:
        events = []
        with httpx.stream(
            "POST",
            server.url + "/v1/audio/transcriptions",
            data={"model": "whisper", "stream": "true"},
            files={"file": ("jfk.wav", (fixtures_dir / "jfk.wav").read_bytes())},
            timeout=300,
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if events[-1]["type"] == "transcript.text.delta":
                        first_delta.set()
        results["stream"] = events
        first_delta.set()  # also when no delta came: the assertions below say what happened

    threads = [threading.Thread(target=request)]
    threads[0].start()
    while metric(server, "whisper_engine_requests") == 0:  # the long request's windows are in vLLM
        assert threads[0].is_alive(), results
    threads.append(threading.Thread(target=stream))
    threads[1].start()
    first_delta.wait(300)
    os.kill(engine_core(server.proc.pid), signal.SIGKILL)
    for t in threads:
        t.join(300)

    r = results["request"]
    assert isinstance(r, httpx.Response) and r.status_code == 500, r
    assert r.json()["error"]["code"] == "engine_error", r.text
    events = results["stream"]
    assert isinstance(events, list) and events[0]["type"] == "transcript.text.delta", events
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "engine_error", events[-3:]
    assert server.proc.wait(120) == 1  # exits non-zero, so the pod restarts
    log = server.log_path.read_text()
    assert "fatal: the engine died" in log and "internal_error" not in log
