"""CPU engines side by side, one run, same cores, same CTranslate2 weights, greedy, language given.

Rows: this server with ENGINE=ctranslate2 (through HTTP, `json`), faster-whisper 1.2.1 int8 sequential
(WhisperModel.transcribe: openai/whisper's seek with previous-text conditioning) and faster-whisper batched + VAD
(BatchedInferencePipeline, speaches' path), both in-process, each in its own process so that peak RSS is its own.
Workloads: short clips and two long recordings (about 75 s each, clips with pauses), at concurrency 1 and 8 (eight
requests at once: this server batches them; faster-whisper serves them one model call at a time, as a server on it
does). Reported: RTFx (audio seconds per wall second), p50/p95 request latency, mean WER, peak RSS, and RTFx as a
ratio to faster-whisper sequential.

Pointed at deployments instead (BENCH_URL, optional BENCH_PEER_URL, see bench/remote.py), the same workloads and
table run against any OpenAI-compatible transcription endpoint.

    make bench-cpu            # or: python bench/cpu_engines.py [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import numpy as np
from audio_sets import Item, load_sets, word_error_rate
from remote import HttpTarget, vm_hwm_mib

ROOT = Path(__file__).resolve().parents[1]
# BENCH_CONCURRENCY: comma-separated, for every row of a run (the worker processes read it too)
CONCURRENCY = tuple(int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,8").split(","))


def requests_for(items: list[Item], concurrency: int) -> list[Item]:
    """Concurrency 1: each item twice, one after the other (a few seconds of short clips are too few to time once);
    concurrency 8: eight requests at once (items cycled)."""
    if concurrency == 1:
        return list(items) * 2
    return [items[i % len(items)] for i in range(max(concurrency, len(items)))]


def run_workload(transcribe, items: list[Item], concurrency: int) -> dict:
    reqs = requests_for(items, concurrency)

    def one(item: Item) -> tuple[float, str]:
        began = time.perf_counter()
        text = transcribe(item)
        return time.perf_counter() - began, text

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, reqs))
    wall = time.perf_counter() - began
    latencies = sorted(r[0] for r in results)
    audio = sum(i.seconds for i in reqs)
    wers = [word_error_rate(i.text, t) for i, (_, t) in zip(reqs, results, strict=True)]
    return {
        "requests": len(reqs),
        "audio_s": round(audio, 1),
        "wall_s": round(wall, 2),
        "rtfx": round(audio / wall, 2),
        "p50_s": round(statistics.median(latencies), 2),
        "p95_s": round(latencies[min(len(latencies) - 1, int(np.ceil(0.95 * len(latencies))) - 1)], 2),
        "wer": round(float(np.mean(wers)), 4),
    }


def run_all(transcribe, sets: dict[str, list[Item]]) -> dict:
    # warm-up, not timed: a server's first requests after start (and its first long one) run slower than the rest
    for item in [*sets["short"], sets["long"][0]]:
        transcribe(item)
    return {f"{name} c={c}": run_workload(transcribe, items, c) for name, items in sets.items() for c in CONCURRENCY}


# --- faster-whisper, in a worker process ---


def faster_whisper_worker(kind: str, model_dir: str, threads: int, fixtures: Path) -> dict:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    compute = "float32" if kind == "fp32" else "int8"
    model = WhisperModel(model_dir, device="cpu", compute_type=compute, cpu_threads=threads)
    if kind == "batched":
        pipeline = BatchedInferencePipeline(model)

        def transcribe(item: Item) -> str:
            segments, _ = pipeline.transcribe(item.samples, language="en", beam_size=1, batch_size=8)
            return "".join(s.text for s in segments)
    else:

        def transcribe(item: Item) -> str:
            segments, _ = model.transcribe(item.samples, language="en", beam_size=1)
            return "".join(s.text for s in segments)

    results = run_all(transcribe, load_sets(fixtures))
    return {"results": results, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def in_worker(kind: str, model_dir: str, threads: int, fixtures: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--model-dir", model_dir, "--threads", str(threads),
         "--fixtures", str(fixtures)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- this server ---


def script(*args: str) -> str:
    out = subprocess.run([str(ROOT / "scripts" / args[0]), *args[1:]], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def test_helpers() -> ModuleType:
    """tests/helpers.py, loaded by path: this file runs as a script (bench/job.yaml ships it beside its siblings)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("kubewhisper_test_helpers", ROOT / "tests" / "helpers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def this_server(model: str, threads: int, fixtures: Path, logs: Path) -> dict:
    """`python -m whisper_inference` with ENGINE=ctranslate2, as the image runs it (tests/helpers.ServerProcess)."""
    env = {"MODEL_ID": model, "LOG_LEVEL": "warning", "ENGINE": "ctranslate2", "CPU_THREADS": str(threads)}
    with test_helpers().ServerProcess(env, logs / "cpu-engines-server.log").wait_ready(300) as server:
        target = HttpTarget(server.url, "whisper")
        results = run_all(target.transcribe, load_sets(fixtures))
        return {"results": results, "peak_rss_mib": vm_hwm_mib(server.proc.pid)}


def table(rows: dict[str, dict], baseline: str) -> str:
    lines = [
        "| workload | engine | RTFx | ratio vs " + baseline + " | p50 s | p95 s | mean WER | peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    workloads = next(iter(rows.values()))["results"].keys()
    for w in workloads:
        base = rows[baseline]["results"][w]["rtfx"]
        for name, row in rows.items():
            r = row["results"][w]
            lines.append(
                f"| {w} | {name} | {r['rtfx']} | {r['rtfx'] / base:.2f}x | {r['p50_s']} | {r['p95_s']} | {r['wer']} "
                f"| {row.get('peak_rss_mib', 'n/a')} |"
            )
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--worker", choices=["sequential", "fp32", "batched"])
    ap.add_argument("--model-dir")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--fixtures")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(faster_whisper_worker(args.worker, args.model_dir, args.threads, Path(args.fixtures))))
        return
    from whisper_inference.engine.ct2_model import find_or_convert

    model = script("models.sh", "base")
    fixtures = Path(script("fixtures.sh"))
    ct2_dir = find_or_convert(model)  # the very weights the server loads
    if not (ct2_dir / "tokenizer.json").is_file():  # faster-whisper reads the tokenizer from the model directory
        shutil.copy(Path(model) / "tokenizer.json", ct2_dir / "tokenizer.json")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {
        "faster-whisper int8 sequential": in_worker("sequential", str(ct2_dir), args.threads, fixtures),
        "faster-whisper int8 batched + VAD": in_worker("batched", str(ct2_dir), args.threads, fixtures),
        "this server, ENGINE=ctranslate2": this_server(model, args.threads, fixtures, out),
    }
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = (
        f"# CPU engines, {when}, {machine()}, {args.threads} threads each, multilingual base, greedy, language en\n\n"
        + table(rows, "faster-whisper int8 sequential")
        + "\n"
    )
    (out / "cpu_engines.md").write_text(report)
    (out / "cpu_engines.json").write_text(json.dumps(rows, indent=1))
    print(report)


if __name__ == "__main__":
    main()
