"""The server's own engine and Transcriber called in-process (no HTTP, no multipart), on make bench's workloads: the
baseline of the HTTP-overhead figure.

Runs as a script in its own process, started by bench/run.py (see `command`): uploads are decoded in processes forked
from a forkserver, and each of them imports the parent's `__main__` module again, so this module's top is light.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import threading
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def command(engine: str, model: str, fixtures: Path, threads: int) -> list[str]:
    return [sys.executable, str(BENCH / "inprocess.py"), engine, model, str(fixtures), str(threads)]


def main() -> None:
    import soundfile as sf
    from audio_sets import RATE, Item, load_sets
    from cpu_engines import run_all

    from whisper_inference.config import load_settings
    from whisper_inference.engine.select import build_engine
    from whisper_inference.transcriber import Transcriber, TranscriptionJob

    engine_name, model, fixtures, threads = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    # as the HTTP rows: CTranslate2 with its own batch size and the cores as threads, vLLM with batches of 16
    overrides = {"cpu_threads": threads} if engine_name == "ctranslate2" else {"max_num_seqs": 16}
    settings = load_settings(model_id=model, engine=engine_name, **overrides)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    engine = build_engine(settings, lambda: None)
    asyncio.run_coroutine_threadsafe(engine.start(), loop).result()
    transcriber = Transcriber(engine, settings)

    def transcribe(item: Item) -> str:
        buf = io.BytesIO()
        sf.write(buf, item.samples, RATE, format="WAV", subtype="PCM_16")  # what the HTTP rows upload
        job = TranscriptionJob(buf.getvalue(), language="en")
        return asyncio.run_coroutine_threadsafe(transcriber.run(job), loop).result().text

    try:
        results = run_all(transcribe, load_sets(fixtures))
    finally:
        engine.shutdown()
    print(json.dumps({"results": results}), flush=True)
    os._exit(0)  # vLLM's engine threads and the decode pool's forkserver need not be joined


if __name__ == "__main__":
    main()
