"""make bench: this server vs vLLM's own OpenAI server, same model, machine and audio, one run.

Each server runs alone (one after the other) so that neither steals the other's cores. Reported per
server and workload: requests/s, RTFx (audio seconds per wall second), p50/p95 latency, word error rate
against the known text, peak RSS of the server's process tree; then the ratios ours/theirs, and our HTTP
overhead (RTFx through HTTP vs calling the same engine in-process).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import psutil
import soundfile as sf

from tests.helpers import ROOT, ServerProcess, free_port, script_output
from tests.helpers import wer as word_error_rate

RATE = 16000


def script(*args: str) -> str:
    return script_output(*args)[-1]


def build_audio(fixtures: Path, out: Path) -> dict[str, list[tuple[str, bytes, float, str]]]:
    """Short clips (JFK + synthesized sentences) and one long recording of several minutes of them,
    as (name, wav bytes, seconds, reference text)."""
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
    path = out / "long.wav"
    sf.write(path, long, RATE, subtype="PCM_16")
    return {"short": clips, "long": [("long", path.read_bytes(), len(long) / RATE, " ".join(texts * times))]}


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


def summarize(latencies: list[float], wall: float, audio_seconds: float) -> dict:
    lat = sorted(latencies)
    return {
        "requests": len(lat),
        "req_per_s": len(lat) / wall,
        "rtfx": audio_seconds / wall,
        "p50_s": statistics.median(lat),
        "p95_s": lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))],
        "wall_s": wall,
    }


def run_http(url: str, model: str, items: list[tuple[str, bytes, float]], concurrency: int) -> dict:
    def one(item):
        name, data, _, _ = item
        t = time.perf_counter()
        r = httpx.post(
            url + "/v1/audio/transcriptions",
            timeout=600,
            data={"model": model, "language": "en", "response_format": "json"},
            files={"file": (f"{name}.wav", data, "audio/wav")},
        )
        r.raise_for_status()
        return time.perf_counter() - t, word_error_rate(item[3], r.json()["text"])

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, items))
    wall = time.perf_counter() - began
    out = summarize([r[0] for r in results], wall, sum(i[2] for i in items))
    out["wer"] = statistics.mean(r[1] for r in results)
    return out


WORKLOADS = [("short c=1", "short", 1, 2), ("short c=8", "short", 8, 8), ("long c=1", "long", 1, 2)]


def workload_items(audio, kind: str, repeats: int):
    return [item for _ in range(repeats) for item in audio[kind]]


def bench_server(
    name: str, cmd: list[str], env: dict, ready_path: str, model: str, audio, logdir: Path, workloads=None
) -> dict:
    port = free_port()
    server = ServerProcess(
        env,
        logdir / f"{name}.log",
        argv=[*cmd, *([] if "whisper_inference" in cmd else ["--port", str(port)])],
        ready_path=ready_path,
        port=port,
    )
    sampler = RssSampler(server.proc.pid)
    sampler.start()
    began = time.perf_counter()
    try:
        server.wait_ready(timeout=600)
        startup = time.perf_counter() - began
        run_http(server.url, model, audio["short"][:1], 1)  # warm-up, not measured
        results = {"startup_s": startup}
        for label, kind, conc, repeats in workloads or WORKLOADS:
            results[label] = run_http(server.url, model, workload_items(audio, kind, repeats), conc)
            print(
                f"  {name:7s} {label:10s} RTFx {results[label]['rtfx']:6.2f}  p50 {results[label]['p50_s']:6.2f}s"
                f"  WER {results[label]['wer']:.3f}",
                flush=True,
            )
        results["peak_rss_gb"] = sampler.peak / 2**30
        return results
    finally:
        sampler.running = False
        server.stop()


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
    for label, cap in (("before", {"MAX_WINDOWS_PER_REQUEST": "0"}), ("after", {})):
        port = free_port()
        log = open(logdir / f"fairness-{label}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "whisper_inference"],
            env={**os.environ, **env, **cap, "PORT": str(port), "HOST": "127.0.0.1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited; see {log.name}")
                try:
                    if httpx.get(url + "/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            run_http(url, "whisper", [jfk], 1)  # warm-up
            alone = run_http(url, "whisper", [jfk] * 5, 1)
            done: dict[str, float] = {}

            def long_request(url: str = url, done: dict[str, float] = done) -> None:
                t = time.perf_counter()
                httpx.post(
                    url + "/v1/audio/transcriptions",
                    data={"model": "whisper", "language": "en"},
                    files={"file": ("long.flac", upload)},
                    timeout=3600,
                ).raise_for_status()
                done["long_s"] = time.perf_counter() - t

            worker = threading.Thread(target=long_request)
            worker.start()
            while "long_s" not in done and int(float(_metric(url, "whisper_engine_requests"))) == 0:
                time.sleep(0.05)
            latencies = []
            while worker.is_alive():
                t = time.perf_counter()
                httpx.post(
                    url + "/v1/audio/transcriptions",
                    data={"model": "whisper", "language": "en"},
                    files={"file": ("jfk.wav", jfk[1])},
                    timeout=600,
                ).raise_for_status()
                if worker.is_alive():  # only requests that ran entirely alongside the upload count
                    latencies.append(time.perf_counter() - t)
            worker.join()
            lat = sorted(latencies)
            results[label] = {
                "jfk_alone_p50_s": alone["p50_s"],
                "jfk_during_long_requests": len(lat),
                "jfk_during_long_p50_s": statistics.median(lat) if lat else None,
                "jfk_during_long_p95_s": lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] if lat else None,
                "long_s": done["long_s"],
                "long_audio_s": long_seconds,
            }
            print(f"  fairness {label}: {results[label]}", flush=True)
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
            log.close()
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


def bench_in_process(model_path: str, audio) -> dict:
    """The same engine and Transcriber the server uses, called directly: no HTTP, no multipart."""
    from whisper_inference.config import load_settings
    from whisper_inference.engine.vllm_engine import WhisperEngine
    from whisper_inference.transcriber import Transcriber, TranscriptionJob

    async def main():
        settings = load_settings(model_id=model_path, max_num_seqs=16)
        engine = WhisperEngine(settings, None)
        await engine.start()
        t = Transcriber(engine, settings)
        await t.run(TranscriptionJob(audio["short"][0][1], language="en"))
        results = {}
        try:
            for label, kind, conc, repeats in WORKLOADS:
                items = workload_items(audio, kind, repeats)
                sem = asyncio.Semaphore(conc)
                lat = []

                async def one(data, sem=sem, lat=lat):  # bound now: each workload has its own
                    async with sem:
                        s = time.perf_counter()
                        await t.run(TranscriptionJob(data, language="en"))
                        lat.append(time.perf_counter() - s)

                began = time.perf_counter()
                await asyncio.gather(*(one(i[1]) for i in items))
                results[label] = summarize(lat, time.perf_counter() - began, sum(i[2] for i in items))
                print(f"  in-proc {label:10s} RTFx {results[label]['rtfx']:6.2f}", flush=True)
        finally:
            engine.shutdown()
        return results

    return asyncio.run(main())


def table(ours: dict, theirs: dict, inproc: dict, untimed: dict) -> str:
    rows = ["| workload | server | req/s | RTFx | p50 s | p95 s | WER |", "| --- | --- | --- | --- | --- | --- | --- |"]

    def ratio(label: str, name: str, o: dict, t: dict) -> str:
        return (
            f"| {label} | **{name}** | {o['req_per_s'] / t['req_per_s']:.2f}x | {o['rtfx'] / t['rtfx']:.2f}x "
            f"| {o['p50_s'] / t['p50_s']:.2f}x | {o['p95_s'] / t['p95_s']:.2f}x | |"
        )

    for label, *_ in WORKLOADS:
        servers = [("kubewhisper", ours), ("vllm serve", theirs)]
        if label in untimed:
            servers.insert(1, ("kubewhisper TIMESTAMPS=none", untimed))
        for name, res in servers:
            r = res[label]
            rows.append(
                f"| {label} | {name} | {r['req_per_s']:.2f} | {r['rtfx']:.2f} | {r['p50_s']:.2f} "
                f"| {r['p95_s']:.2f} | {r['wer']:.3f} |"
            )
        rows.append(ratio(label, "ours/theirs", ours[label], theirs[label]))
        if label in untimed:
            rows.append(ratio(label, "ours (none)/theirs", untimed[label], theirs[label]))
    rows.append("")
    rows.append(
        f"Peak RSS (process tree): kubewhisper {ours['peak_rss_gb']:.2f} GB, vllm serve "
        f"{theirs['peak_rss_gb']:.2f} GB (ratio {ours['peak_rss_gb'] / theirs['peak_rss_gb']:.2f}x); "
        f"start-up to ready: {ours['startup_s']:.0f} s vs {theirs['startup_s']:.0f} s."
    )
    rows.append("")
    rows.append("HTTP overhead (1 - RTFx through HTTP / RTFx in-process, same engine):")
    for label, *_ in WORKLOADS:
        rows.append(
            f"- {label}: {100 * (1 - ours[label]['rtfx'] / inproc[label]['rtfx']):+.1f}% "
            f"(HTTP {ours[label]['rtfx']:.2f} vs in-process {inproc[label]['rtfx']:.2f})"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None, help="HF Whisper dir (default: the embedded base)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument(
        "--only",
        choices=["words-vad", "fairness", "repeated"],
        help="one part alone: words-vad (word timestamps, VAD; in-process), fairness (JFK p95 during a long upload)",
    )
    args = ap.parse_args()
    model = args.model or script("models.sh", "base")
    fixtures = Path(script("fixtures.sh"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    audio = build_audio(fixtures, out)
    print(
        f"audio: {len(audio['short'])} short clips ({sum(c[2] for c in audio['short']):.0f} s), "
        f"long {audio['long'][0][2]:.0f} s; model {model}",
        flush=True,
    )
    from .words_vad import bench_words_vad, words_vad_table

    words_vad_report = ""
    if args.only not in ("fairness", "repeated"):
        print("word timestamps and VAD (in-process):", flush=True)
        words_vad = bench_words_vad(model, audio, fixtures, word_error_rate)
        words_vad_report = (
            f"Word timestamps and VAD, {date.today()}, {platform.machine()} {psutil.cpu_count()} CPUs, "
            f"no GPU, model {Path(model).name}\n\n" + words_vad_table(words_vad)
        )
    if args.only == "words-vad":
        print("\n" + words_vad_report)
        (out / "words-vad.md").write_text(words_vad_report + "\n")
        (out / "words-vad.json").write_text(json.dumps(words_vad, indent=2))
        return
    common = {
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    ours_env = {
        **common,
        "MODEL_ID": model,
        "SERVED_MODEL_NAME": "whisper",
        "MAX_NUM_SEQS": "16",
        "MAX_CONCURRENT_REQUESTS": "16",
        "LOG_LEVEL": "warning",
    }
    if args.only == "repeated":
        repeated = bench_repeated(audio, ours_env, out)
        (out / "repeated.json").write_text(json.dumps(repeated, indent=2))
        print(repeated_table(repeated))
        return
    if args.only == "fairness":
        fairness = bench_fairness(model, audio, ours_env, out)
        (out / "fairness.json").write_text(json.dumps(fairness, indent=2))
        print(fairness_table(fairness))
        return
    print("in-process engine:", flush=True)
    inproc = bench_in_process(model, audio)
    print("servers:", flush=True)
    ours = bench_server(
        "ours",
        [sys.executable, "-m", "whisper_inference"],
        {
            **common,
            "MODEL_ID": model,
            "SERVED_MODEL_NAME": "whisper",
            "MAX_NUM_SEQS": "16",
            "MAX_CONCURRENT_REQUESTS": "16",
            "LOG_LEVEL": "warning",
        },
        "/ready",
        "whisper",
        audio,
        out,
    )
    # short clips are one window, decoded untimed under TIMESTAMPS=auto already: only long audio differs
    untimed = bench_server(
        "ours-none",
        [sys.executable, "-m", "whisper_inference"],
        {
            **common,
            "MODEL_ID": model,
            "SERVED_MODEL_NAME": "whisper",
            "MAX_NUM_SEQS": "16",
            "MAX_CONCURRENT_REQUESTS": "16",
            "LOG_LEVEL": "warning",
            "TIMESTAMPS": "none",
        },
        "/ready",
        "whisper",
        audio,
        out,
        workloads=[w for w in WORKLOADS if w[1] == "long"],
    )
    theirs = bench_server(
        "vllm",
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            model,
            "--served-model-name",
            "whisper",
            "--dtype",
            "float32",
            "--max-model-len",
            "448",
            "--max-num-seqs",
            "16",
            "--enforce-eager",
            "--host",
            "127.0.0.1",
        ],
        common,
        "/health",
        "whisper",
        audio,
        out,
    )
    print("fairness:", flush=True)
    fairness = bench_fairness(model, audio, ours_env, out)
    print("repeated speech:", flush=True)
    repeated = bench_repeated(audio, ours_env, out)
    report = (
        f"`make bench`, {date.today()}, {platform.machine()} {psutil.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU, vllm-cpu 0.32.0, float32, "
        f"model {Path(model).name}\n\n"
        + table(ours, theirs, inproc, untimed)
        + "\n\n"
        + fairness_table(fairness)
        + "\n\n"
        + repeated_table(repeated)
        + "\n\n"
        + words_vad_report
    )
    print("\n" + report)
    (out / "report.md").write_text(report + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {
                "ours": ours,
                "ours_timestamps_none": untimed,
                "vllm": theirs,
                "in_process": inproc,
                "words_vad": words_vad,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
