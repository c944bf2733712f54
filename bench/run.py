"""make bench: every row of issue 13 side by side, one run, same machine, weights and audio.

Rows, one after the other on the same cores so that none steals another's: faster-whisper int8 sequential (the
baseline of the ratios: openai/whisper's seek with previous-text conditioning), faster-whisper fp32 sequential and
int8 batched + VAD (speaches' path), this server on CTranslate2 (json, verbose_json, json with VAD), vLLM's own
OpenAI server, and this server on vLLM (json, verbose_json, json with VAD, and TIMESTAMPS=none). Workloads
(bench/audio_sets.py, the same as `make bench-cpu` and `make bench-remote`): four short clips and two long
recordings, at concurrency 1 and 8. Then the engines in-process (no HTTP) for the HTTP-overhead figure, issue 13's
targets computed from this run, and the extra parts (fairness, repeated speech, word timestamps and VAD).

    make bench                       # or: python -m bench.run [--only table|fairness|repeated|words-vad]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import psutil
import soundfile as sf

from tests.helpers import ROOT, ServerProcess, free_port, script_output
from tests.helpers import wer as word_error_rate


def _sibling(name: str) -> ModuleType:
    """bench/NAME.py, loaded by path and registered under its bare name: the siblings also run as scripts
    (bench/job.yaml ships them side by side), so they import each other by that name."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


audio_sets = _sibling("audio_sets")
remote = _sibling("remote")
cpu_engines = _sibling("cpu_engines")
inprocess = _sibling("inprocess")
load_sets, HttpTarget = audio_sets.load_sets, remote.HttpTarget

RATE = 16000
CT2_JSON = "kubewhisper ctranslate2, json"
CT2_VAD = "kubewhisper ctranslate2, json + VAD"
VLLM_JSON = "kubewhisper vllm, json"
VLLM_VAD = "kubewhisper vllm, json + VAD"
VLLM_SERVE = "vllm serve, json"
SERVER_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "LOG_LEVEL": "warning"}
BASELINE = "faster-whisper int8 sequential"
FW_ROWS = {
    BASELINE: "sequential",
    "faster-whisper fp32 sequential": "fp32",
    "faster-whisper int8 batched + VAD": "batched",
}
VAD = {"chunking_strategy": "auto"}


def script(*args: str) -> str:
    return script_output(*args)[-1]


def build_audio(fixtures: Path) -> dict[str, list[tuple[str, bytes, float, str]]]:
    """The extra parts' audio: the short clips and one 314 s recording of them (0.5 s pauses), as (name, wav bytes,
    seconds, reference text)."""
    names = ["jfk", "en1", "en2", "en3"]
    clips, arrays, texts = [], [], []
    for n in names:
        data = (fixtures / f"{n}.wav").read_bytes()
        audio, rate = sf.read(fixtures / f"{n}.wav", dtype="float32")
        texts.append((fixtures / f"{n}.txt").read_text().strip())
        clips.append((n, data, len(audio) / rate, texts[-1]))
        arrays.append(np.concatenate([audio, np.zeros(rate // 2, np.float32)]))
    one_pass = np.concatenate(arrays)
    times = int(np.ceil(300 / (len(one_pass) / RATE)))
    long = np.tile(one_pass, times)
    buf = io.BytesIO()
    sf.write(buf, long, RATE, format="WAV", subtype="PCM_16")
    return {"short": clips, "long": [("long", buf.getvalue(), len(long) / RATE, " ".join(texts * times))]}


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root, self.peak, self.running = psutil.Process(pid), 0, True

    def run(self) -> None:
        while self.running:
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)


def bench_server(
    env: dict[str, str],
    log: Path,
    variants: dict[str, dict[str, str]],
    sets: dict,
    argv: list[str] | None = None,
    ready_path: str = "/ready",
) -> dict[str, dict]:
    """One server, started alone on the machine; every variant (a row: form fields sent with each request) runs the
    same workloads. Peak RSS is the server's process tree over all its rows."""
    port = free_port()
    began = time.perf_counter()
    argv = [*argv, "--port", str(port)] if argv else None
    with ServerProcess({**SERVER_ENV, **env}, log, argv=argv, ready_path=ready_path, port=port) as server:
        sampler = RssSampler(server.proc.pid)
        sampler.start()
        try:
            server.wait_ready(600)
            startup = time.perf_counter() - began
            rows = {}
            for name, fields in variants.items():
                target = HttpTarget(server.url, "whisper", **fields)
                rows[name] = {"results": cpu_engines.run_all(target.transcribe, sets), "startup_s": round(startup, 1)}
                print(f"  {name}: {summary(rows[name])}", flush=True)
        finally:
            sampler.running = False
    for row in rows.values():
        row["peak_rss_mib"] = round(sampler.peak / 2**20)
    return rows


def summary(row: dict) -> str:
    return ", ".join(f"{w} RTFx {r['rtfx']} WER {r['wer']}" for w, r in row["results"].items())


def in_process(engine: str, model: str, fixtures: Path, threads: int) -> dict:
    out = subprocess.run(
        inprocess.command(engine, model, fixtures, threads),
        env={**os.environ, **SERVER_ENV},
        check=True,
        capture_output=True,
        text=True,
    )
    row: dict = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  in-process {engine}: {summary(row)}", flush=True)
    return row


def bench_rows(model: str, fixtures: Path, threads: int, logs: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """Every row of the side-by-side table, one after the other on the same cores, and the in-process baselines of
    the HTTP-overhead figure."""
    from whisper_inference.engine.ct2_model import find_or_convert

    sets = load_sets(fixtures)
    ct2_dir = find_or_convert(model)  # the very weights the CTranslate2 engine loads
    if not (ct2_dir / "tokenizer.json").is_file():  # faster-whisper reads the tokenizer from the model directory
        shutil.copy(Path(model) / "tokenizer.json", ct2_dir / "tokenizer.json")
    rows: dict[str, dict] = {}
    for name, kind in FW_ROWS.items():
        rows[name] = cpu_engines.in_worker(kind, str(ct2_dir), threads, fixtures)
        print(f"  {name}: {summary(rows[name])}", flush=True)
    ours = {"MODEL_ID": model, "SERVED_MODEL_NAME": "whisper", "MAX_CONCURRENT_REQUESTS": "16"}
    rows |= bench_server(
        {**ours, "ENGINE": "ctranslate2", "CPU_THREADS": str(threads)},  # the engine's own batch size
        logs / "bench-ctranslate2.log",
        {
            "kubewhisper ctranslate2, json": {},
            "kubewhisper ctranslate2, verbose_json": {"response_format": "verbose_json"},
            CT2_VAD: VAD,
        },
        sets,
    )
    rows |= bench_server(
        {},
        logs / "bench-vllm-serve.log",
        {VLLM_SERVE: {}},
        sets,
        argv=[
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
            "--served-model-name", "whisper", "--dtype", "float32", "--max-model-len", "448",
            "--max-num-seqs", "16", "--enforce-eager", "--host", "127.0.0.1",
        ],
        ready_path="/health",
    )  # fmt: skip
    ours["MAX_NUM_SEQS"] = "16"  # as vllm serve's --max-num-seqs (and this server's default on CPU)
    rows |= bench_server(
        ours,
        logs / "bench-vllm.log",
        {
            VLLM_JSON: {},
            "kubewhisper vllm, verbose_json": {"response_format": "verbose_json"},
            "kubewhisper vllm, json + VAD": VAD,
        },
        sets,
    )
    rows |= bench_server(
        {**ours, "TIMESTAMPS": "none"},
        logs / "bench-vllm-none.log",
        {"kubewhisper vllm TIMESTAMPS=none, json": {}},
        sets,
    )
    inproc = {
        "kubewhisper ctranslate2, json": in_process("ctranslate2", model, fixtures, threads),
        VLLM_JSON: in_process("vllm", model, fixtures, threads),
    }
    return rows, inproc


def bench_fairness(model: str, audio, env: dict, logdir: Path, long_seconds: float = 900) -> dict:
    """p95 latency of JFK requests sent one after another while one long upload is transcribed: with every window
    of the upload in the engine at once (MAX_WINDOWS_PER_REQUEST=0, the old admission) and with the default cap."""
    jfk = audio["short"][0]
    one, rate = sf.read(io.BytesIO(audio["long"][0][1]), dtype="float32")
    long = np.tile(one, int(np.ceil(long_seconds * rate / len(one))))[: int(long_seconds * rate)]
    buf = io.BytesIO()
    sf.write(buf, long, rate, format="FLAC")
    upload = buf.getvalue()
    results = {}

    def post(url: str, name: str, data: bytes, timeout: float) -> float:
        began = time.perf_counter()
        httpx.post(
            url + "/v1/audio/transcriptions",
            data={"model": "whisper", "language": "en"},
            files={"file": (name, data)},
            timeout=timeout,
        ).raise_for_status()
        return time.perf_counter() - began

    for label, cap in (("before", {"MAX_WINDOWS_PER_REQUEST": "0"}), ("after", {})):
        with ServerProcess({**env, **cap}, logdir / f"fairness-{label}.log").wait_ready(600) as server:
            url = server.url
            post(url, "jfk.wav", jfk[1], 600)  # warm-up
            alone = sorted(post(url, "jfk.wav", jfk[1], 600) for _ in range(5))
            done: dict[str, float] = {}

            def long_request(url: str = url, done: dict[str, float] = done) -> None:
                done["long_s"] = post(url, "long.flac", upload, 3600)

            worker = threading.Thread(target=long_request)
            worker.start()
            while "long_s" not in done and int(float(_metric(url, "whisper_engine_requests"))) == 0:
                time.sleep(0.05)
            latencies = []
            while worker.is_alive():
                took = post(url, "jfk.wav", jfk[1], 600)
                if worker.is_alive():  # only requests that ran entirely alongside the upload count
                    latencies.append(took)
            worker.join()
            lat = sorted(latencies)
            results[label] = {
                "jfk_alone_p50_s": statistics.median(alone),
                "jfk_during_long_requests": len(lat),
                "jfk_during_long_p50_s": statistics.median(lat) if lat else None,
                "jfk_during_long_p95_s": lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] if lat else None,
                "long_s": done["long_s"],
                "long_audio_s": long_seconds,
            }
            print(f"  fairness {label}: {results[label]}", flush=True)
    return results


def bench_repeated(audio, env: dict, logdir: Path, runs: int = 3) -> dict:
    """JFK ten times with 0.3 s pauses (legitimately repeated speech): seconds per request, windows decoded again by
    the temperature fallback (whisper_windows_redecoded_total) and sentences found, per response format. Before the
    repetition-safe fallback every window here failed the whole-window compression test (README: 26-28 decodes,
    30-44 s); this measures the current code."""
    jfk, rate = sf.read(io.BytesIO(audio["short"][0][1]), dtype="float32")
    pause = np.zeros(int(0.3 * rate), np.float32)
    ten = np.concatenate([np.concatenate([jfk, pause]) for _ in range(10)])
    buf = io.BytesIO()
    sf.write(buf, ten, rate, format="WAV", subtype="PCM_16")
    upload = buf.getvalue()
    server = ServerProcess(env, logdir / "repeated.log").wait_ready()
    results: dict[str, dict] = {}
    try:
        for fmt in ("json", "verbose_json"):
            seconds, redecoded, sentences = [], [], []
            for _ in range(runs):
                before = float(_metric(server.url, "whisper_windows_redecoded_total"))
                t = time.perf_counter()
                r = httpx.post(
                    server.url + "/v1/audio/transcriptions",
                    data={"model": "whisper", "language": "en", "response_format": fmt},
                    files={"file": ("jfk10.wav", upload)},
                    timeout=1200,
                )
                r.raise_for_status()
                seconds.append(time.perf_counter() - t)
                redecoded.append(int(float(_metric(server.url, "whisper_windows_redecoded_total")) - before))
                sentences.append(r.json()["text"].lower().count("fellow americans"))
            results[fmt] = {"seconds": seconds, "windows_redecoded": redecoded, "sentences": sentences}
            print(f"  repeated {fmt}: {results[fmt]}", flush=True)
    finally:
        server.stop()
    return results


def repeated_table(r: dict) -> str:
    rows = [
        "JFK x10 with 0.3 s pauses (110 s), 3 requests per format:",
        "",
        "| format | seconds per request | windows decoded again | sentences found (of 10) |",
        "| --- | --- | --- | --- |",
    ]
    for fmt, v in r.items():
        rows.append(
            f"| {fmt} | {', '.join(f'{x:.1f}' for x in v['seconds'])} | "
            f"{', '.join(map(str, v['windows_redecoded']))} | {', '.join(map(str, v['sentences']))} |"
        )
    return "\n".join(rows)


def fairness_table(f: dict) -> str:
    rows = ["| JFK requests while a long upload runs | alone p50 s | during p50 s | during p95 s | n | long upload s |"]
    rows.append("| --- | --- | --- | --- | --- | --- |")
    for label, r in f.items():
        rows.append(
            f"| {label} | {r['jfk_alone_p50_s']:.2f} | {r['jfk_during_long_p50_s']:.2f} | "
            f"{r['jfk_during_long_p95_s']:.2f} | {r['jfk_during_long_requests']} | {r['long_s']:.1f} |"
        )
    return "\n".join(rows)


def _metric(url: str, name: str) -> str:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return line.split()[1]
    return "0"


def target_rows(rows: dict[str, dict], inproc: dict[str, dict]) -> list[tuple[str, str, str, str, str, bool]]:
    """Issue 13's targets, each as (target, row, workload, measured, goal, met), from this run's figures only."""
    out = []
    fw = rows[BASELINE]["results"]
    for name in (CT2_JSON, CT2_VAD):
        r = rows[name]["results"]
        for w in r:
            goal = 1.5 if w.endswith("c=8") else 1.0
            ratio = r[w]["rtfx"] / fw[w]["rtfx"]
            out.append(
                ("RTFx vs faster-whisper int8 sequential", name, w, f"{ratio:.2f}x", f">= {goal}x", ratio >= goal)
            )
    for name in (CT2_JSON, CT2_VAD, VLLM_JSON, VLLM_VAD):
        r = rows[name]["results"]
        for s in ("short", "long"):
            ours, seq = r[f"{s} c=1"]["wer"], fw[f"{s} c=1"]["wer"]
            out.append(
                ("mean WER vs faster-whisper sequential", name, s, f"{ours:.3f} vs {seq:.3f}", "<=", ours <= seq)
            )
    theirs = rows[VLLM_SERVE]["results"]
    for name in (VLLM_JSON, VLLM_VAD):
        r = rows[name]["results"]
        for w in (w for w in ("long c=1", "long c=8") if w in r):
            ratio = r[w]["rtfx"] / theirs[w]["rtfx"]
            out.append(("long audio RTFx vs vllm serve", name, w, f"{ratio:.2f}x", ">= 1.0x", ratio >= 1.0))
        ours, peer = r["long c=1"]["wer"], theirs["long c=1"]["wer"]
        out.append(
            ("long audio WER vs vllm serve", name, "long", f"{ours:.3f} vs {peer:.3f}", "<= half", ours <= peer / 2)
        )
    for engine in ("ctranslate2", "vllm"):
        j, v = rows[f"kubewhisper {engine}, json"]["results"], rows[f"kubewhisper {engine}, verbose_json"]["results"]
        for w in ("short c=1", "long c=1"):
            ratio = j[w]["rtfx"] / v[w]["rtfx"]  # verbose_json's time over json's
            out.append(
                ("verbose_json time vs json", f"kubewhisper {engine}", w, f"{ratio:.2f}x", "<= 1.2x", ratio <= 1.2)
            )
    for name, base in inproc.items():
        for w, r in base["results"].items():
            overhead = 1 - rows[name]["results"][w]["rtfx"] / r["rtfx"]
            out.append(("HTTP overhead vs in-process", name, w, f"{100 * overhead:+.1f}%", "<= 5%", overhead <= 0.05))
    return out


def targets_table(targets: list[tuple[str, str, str, str, str, bool]]) -> str:
    lines = ["| target | row | workload | measured | goal | |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {t} | {row} | {w} | {m} | {g} | {'met' if ok else 'NOT met'} |" for t, row, w, m, g, ok in targets]
    met = sum(t[-1] for t in targets)
    return "\n".join(lines) + f"\n\n{met} of {len(targets)} met."


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for dist in ("vllm", "vllm-cpu", "ctranslate2", "faster-whisper", "torch"):
        try:
            found.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None, help="HF Whisper dir (default: the embedded base)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument(
        "--only",
        choices=["table", "words-vad", "fairness", "repeated"],
        help="one part alone: table (the side-by-side rows and targets), words-vad (word timestamps, VAD; "
        "in-process), fairness (JFK p95 during a long upload), repeated (repeated speech)",
    )
    args = ap.parse_args()
    model = args.model or script("models.sh", "base")
    fixtures = Path(script("fixtures.sh"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = len(os.sched_getaffinity(0))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = (
        f"{cpu_engines.machine()}, {psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU; {versions()}; "
        f"model {Path(model).name}, greedy, language en"
    )
    parts: list[str] = []
    if args.only in (None, "table"):
        print(f"side by side ({machine}):", flush=True)
        rows, inproc = bench_rows(model, fixtures, threads, out)
        parts.append(
            f"# make bench, {when}\n\n{machine}; {threads} threads for faster-whisper and the CTranslate2 engine "
            f"(vLLM's CPU backend sets its own). Ratios: RTFx over {BASELINE}'s. Peak RSS: the server's process tree "
            "over all its rows (faster-whisper: its process).\n\n"
            + cpu_engines.table(rows, BASELINE)
            + "\n\n## Issue 13's targets, from this run\n\n"
            + targets_table(target_rows(rows, inproc))
        )
        (out / "results.json").write_text(json.dumps({"rows": rows, "in_process": inproc}, indent=1))
        (out / "report.md").write_text("\n\n".join(parts) + "\n")
        print("\n" + parts[-1], flush=True)
    if args.only == "table":
        return
    audio = build_audio(fixtures)
    ours_env = {**SERVER_ENV, "MODEL_ID": model, "SERVED_MODEL_NAME": "whisper", "MAX_NUM_SEQS": "16",
                "MAX_CONCURRENT_REQUESTS": "16"}  # fmt: skip
    extras: list[tuple[str, str]] = []
    if args.only in (None, "fairness"):
        print("fairness:", flush=True)
        fairness = bench_fairness(model, audio, ours_env, out)
        (out / "fairness.json").write_text(json.dumps(fairness, indent=2))
        extras.append(("fairness", "## Fairness (vLLM engine)\n\n" + fairness_table(fairness)))
    if args.only in (None, "repeated"):
        print("repeated speech:", flush=True)
        repeated = bench_repeated(audio, ours_env, out)
        (out / "repeated.json").write_text(json.dumps(repeated, indent=2))
        extras.append(("repeated", "## Repeated speech (vLLM engine)\n\n" + repeated_table(repeated)))
    if args.only in (None, "words-vad"):
        from .words_vad import bench_words_vad, words_vad_table

        print("word timestamps and VAD (in-process):", flush=True)
        words_vad = bench_words_vad(model, audio, fixtures, word_error_rate)
        (out / "words-vad.json").write_text(json.dumps(words_vad, indent=2))
        extras.append(
            ("words-vad", "## Word timestamps and VAD (vLLM engine, in-process)\n\n" + words_vad_table(words_vad))
        )
    for name, text in extras:
        print("\n" + text, flush=True)
        if args.only is not None:
            (out / f"{name}.md").write_text(f"{when}, {machine}\n\n{text}\n")
        else:
            parts.append(text)
    if args.only is None:
        (out / "report.md").write_text("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
