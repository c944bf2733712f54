"""Word-timestamp and VAD figures, in-process on the server's own engine and Transcriber (no HTTP):

- the extra time of word timestamps over segment timestamps, on short clips and on long audio;
- VAD on vs off on long recordings with long pauses: time and word error rate.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


def with_pauses(fixtures: Path, seconds: float = 150.0, seed: int = 3) -> tuple[bytes, float, str]:
    """Speech clips separated by pauses of 2-10 s (a meeting, a lecture with breaks): ~`seconds` long."""
    rng = np.random.default_rng(seed)
    clips = []
    for n in ["jfk", "en1", "en2", "en3"]:
        audio, _ = sf.read(fixtures / f"{n}.wav", dtype="float32")
        clips.append((audio, (fixtures / f"{n}.txt").read_text().strip()))
    parts, texts, total = [], [], 0.0
    while total < seconds:
        audio, text = clips[len(texts) % len(clips)]
        pause = np.zeros(int(rng.uniform(2.0, 10.0) * RATE), np.float32)
        parts += [audio, pause]
        texts.append(text)
        total += (len(audio) + len(pause)) / RATE
    samples = np.concatenate(parts)
    import io

    buf = io.BytesIO()
    sf.write(buf, samples, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue(), len(samples) / RATE, " ".join(texts)


def non_speech(kind: str, seconds: float = 30.0) -> bytes:
    """Synthesized inputs with no speech: silence, low and louder noise, a tune of sustained tones."""
    import io

    rng = np.random.default_rng(11)
    t = np.arange(int(seconds * RATE)) / RATE
    if kind == "silence":
        x = np.zeros(len(t))
    elif kind.startswith("noise"):
        x = float(kind.split("-")[1]) * rng.standard_normal(len(t))
    else:
        notes = rng.choice([220.0, 261.6, 329.6, 392.0, 440.0], size=int(seconds * 2) + 1)
        f = notes[(t * 2).astype(int)]
        x = 0.2 * (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 1.5 * f * t))
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


NON_SPEECH = ["silence", "noise-0.003", "noise-0.03", "tones"]


def bench_words_vad(model_path: str, audio: dict, fixtures: Path, wer) -> dict:
    from whisper_inference.audio.vad import VadOptions
    from whisper_inference.config import load_settings
    from whisper_inference.engine.vllm_engine import WhisperEngine
    from whisper_inference.transcriber import Transcriber, TranscriptionJob

    paused = with_pauses(fixtures)

    async def main() -> dict:
        settings = load_settings(model_id=model_path, max_num_seqs=16)
        engine = WhisperEngine(settings, None)
        await engine.start()
        t = Transcriber(engine, settings)
        first = audio["short"][0][1]
        await t.run(TranscriptionJob(first, language="en", show_timestamps=True, words=True))  # loads the aligner
        await t.run(TranscriptionJob(first, language="en", show_timestamps=True, vad=VadOptions()))  # loads the VAD

        async def timed(items, repeats: int, **job) -> tuple[float, float]:
            """Wall seconds for the items one after another (best of `repeats`), and their mean WER."""
            best, errors = float("inf"), []
            for _ in range(repeats):
                began = time.perf_counter()
                errors = []
                for _, data, _, ref in items:
                    out = await t.run(TranscriptionJob(data, language="en", show_timestamps=True, **job))
                    errors.append(wer(ref, out.text))
                best = min(best, time.perf_counter() - began)
            return best, statistics.mean(errors)

        results: dict = {}
        try:
            for label, items, repeats in (
                ("short", audio["short"], 3),
                ("long", audio["long"], 1),
                ("paused", [("paused", *paused)], 1),
            ):
                seg, seg_wer = await timed(items, repeats)
                word, _ = await timed(items, repeats, words=True)
                results[f"words {label}"] = {
                    "audio_s": sum(i[2] for i in items),
                    "segment_s": seg,
                    "word_s": word,
                    "extra": word / seg - 1,
                    "wer": seg_wer,
                }
                print(f"  words {label:7s} segment {seg:7.2f}s  word {word:7.2f}s  (+{100 * (word / seg - 1):.0f}%)")
            for kind in NON_SPEECH:
                data = non_speech(kind)
                off = await t.run(TranscriptionJob(data, language="en", show_timestamps=True))
                on = await t.run(TranscriptionJob(data, language="en", show_timestamps=True, vad=VadOptions()))
                results[f"non-speech {kind}"] = {"off_text": off.text, "on_text": on.text}
                print(f"  non-speech {kind:12s} off {off.text!r}  on {on.text!r}")
            for label, items in (("paused", [("paused", *paused)]), ("long", audio["long"])):
                off, off_wer = await timed(items, 1)
                on, on_wer = await timed(items, 1, vad=VadOptions())
                results[f"vad {label}"] = {
                    "audio_s": sum(i[2] for i in items),
                    "off_s": off,
                    "on_s": on,
                    "off_wer": off_wer,
                    "on_wer": on_wer,
                }
                print(f"  vad {label:7s} off {off:7.2f}s WER {off_wer:.3f}  on {on:7.2f}s WER {on_wer:.3f}")
        finally:
            engine.shutdown()
        return results

    return asyncio.run(main())


def words_vad_table(r: dict) -> str:
    rows = [
        "Word timestamps (alignment pass + DTW) over segment timestamps, in-process, one request at a time:",
        "",
        "| audio | seconds | segment s | word s | extra |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key in ("words short", "words long", "words paused"):
        x = r[key]
        rows.append(
            f"| {key.split()[1]} | {x['audio_s']:.0f} | {x['segment_s']:.2f} | {x['word_s']:.2f} "
            f"| {100 * x['extra']:+.0f}% |"
        )
    rows += [
        "",
        "VAD (chunking_strategy auto) on vs off:",
        "",
        "| audio | seconds | off s | on s | on/off | WER off | WER on |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in ("vad paused", "vad long"):
        x = r[key]
        rows.append(
            f"| {key.split()[1]} | {x['audio_s']:.0f} | {x['off_s']:.2f} | {x['on_s']:.2f} | "
            f"{x['on_s'] / x['off_s']:.2f}x | {x['off_wer']:.3f} | {x['on_wer']:.3f} |"
        )
    rows += [
        "",
        "30 s of non-speech, text with VAD off / on:",
        "",
        "| input | VAD off | VAD on |",
        "| --- | --- | --- |",
    ]
    for kind in NON_SPEECH:
        x = r[f"non-speech {kind}"]
        rows.append(f"| {kind} | {x['off_text']!r} | {x['on_text']!r} |")
    return "\n".join(rows)
