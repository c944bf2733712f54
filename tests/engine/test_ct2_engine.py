"""ENGINE=ctranslate2: the real server on CTranslate2 int8 (CPU), real Whisper weights, the official openai SDK."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from openai import OpenAI

from helpers import wer

pytestmark = pytest.mark.engine
RATE = 16000


@pytest.fixture(scope="module")
def ct2_tiny(start_server, model_tiny_en):
    return start_server(model_tiny_en, ENGINE="ctranslate2", SERVED_MODEL_NAME="whisper-tiny.en")


@pytest.fixture(scope="module")
def ct2_base(start_server, model_base):
    return start_server(model_base, ENGINE="ctranslate2", SERVED_MODEL_NAME="whisper-base")


def torch_libraries(pid: int) -> set[str]:
    """The torch shared libraries (libtorch*, libc10*) mapped into a process."""
    paths = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/" in line}
    return {p for p in paths if Path(p).name.startswith(("libtorch", "libc10"))}


def vm_hwm_mib(pid: int) -> int:
    """The process's peak resident memory (VmHWM), MiB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) // 1024


def client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="dummy", max_retries=0, timeout=300)


def reference(fixtures_dir, name: str) -> str:
    return (fixtures_dir / f"{name}.txt").read_text().strip()


def compose(fixtures_dir, names, gap=0.6) -> tuple[bytes, str, float]:
    import soundfile as sf

    parts = []
    for n in names:
        parts += [sf.read(fixtures_dir / f"{n}.wav", dtype="float32")[0], np.zeros(int(gap * RATE), np.float32)]
    audio = np.concatenate(parts)
    buf = io.BytesIO()
    sf.write(buf, audio, RATE, format="WAV")
    return buf.getvalue(), " ".join(reference(fixtures_dir, n) for n in names), len(audio) / RATE


@pytest.mark.parametrize("model", ["ct2_tiny", "ct2_base"])
@pytest.mark.parametrize("fmt", ["json", "verbose_json"])
def test_jfk_through_openai_sdk(request, fixtures_dir, model, fmt):
    server = request.getfixturevalue(model)
    with open(fixtures_dir / "jfk.wav", "rb") as f:
        out = client(server).audio.transcriptions.create(model="whisper", file=f, response_format=fmt, language="en")
    assert wer(reference(fixtures_dir, "jfk"), out.text) < 0.15, out.text
    if fmt == "verbose_json":
        assert out.duration == pytest.approx(11.0, abs=0.05)
        assert out.segments and out.segments[-1].end <= 11.0
        assert all(0.0 <= s.no_speech_prob < 0.6 for s in out.segments)  # CTranslate2's no_speech_prob, speech


def test_health_names_the_engine(ct2_tiny):
    body = httpx.get(ct2_tiny.url + "/health").json()
    assert body["dtype"] == "int8" and "ctranslate2" in body["dtype_reason"], body


def test_language_detected_on_the_multilingual_model(ct2_base, fixtures_dir):
    with open(fixtures_dir / "de1.wav", "rb") as f:
        out = client(ct2_base).audio.transcriptions.create(model="whisper", file=f, response_format="verbose_json")
    assert out.language == "german" and "guten morgen" in out.text.lower(), out.text


@pytest.mark.parametrize("fmt", ["json", "verbose_json"])
def test_long_composition(ct2_base, fixtures_dir, fmt):
    """Over 60 s: three windows, cut in pauses; what Whisper leaves out of a window is decoded again."""
    names = ["jfk", "en1", "en2", "en3", "en1", "en2", "jfk", "en3", "en2", "jfk"]
    wav, text, duration = compose(fixtures_dir, names)
    assert duration > 60
    out = client(ct2_base).audio.transcriptions.create(
        model="whisper", file=("long.wav", wav), response_format=fmt, language="en"
    )
    assert wer(text, out.text) < 0.15, out.text
    if fmt == "verbose_json":
        starts = [s.start for s in out.segments]
        assert starts == sorted(starts) and starts[-1] > 50, starts


def test_concurrent_requests_batched_together_each_get_their_own_text(ct2_base, fixtures_dir):
    """Eight requests at once share batches in the engine: every response holds its own clip's words."""
    names = ["jfk", "en1", "en2", "en3", "de1", "en3", "en2", "en1"]

    def one(name: str) -> tuple[str, str]:
        with open(fixtures_dir / f"{name}.wav", "rb") as f:
            lang = "de" if name == "de1" else "en"
            return name, client(ct2_base).audio.transcriptions.create(model="whisper", file=f, language=lang).text

    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(one, names))
    refs = {n: reference(fixtures_dir, n) for n in set(names)}
    for name, text in results:
        # each response is its own clip's transcript (no rows swapped in a batch), however well base hears it
        nearest = min(refs, key=lambda n: wer(refs[n], text))
        assert nearest == name, (name, text)
    english = [wer(refs[n], t) for n, t in results if n != "de1"]
    assert sum(english) / len(english) < 0.25, results


def test_stream_gives_the_text(ct2_base, fixtures_dir):
    wav, text, _ = compose(fixtures_dir, ["en1", "en2", "en3", "jfk", "en1", "en2", "en3"])
    events = list(
        client(ct2_base).audio.transcriptions.create(
            model="whisper", file=("long.wav", wav), language="en", stream=True
        )
    )
    assert events[-1].type == "transcript.text.done"
    deltas = "".join(e.delta for e in events[:-1])
    assert deltas == events[-1].text and wer(text, deltas) < 0.15, deltas


@pytest.mark.parametrize("model", ["ct2_tiny", "ct2_base"])
def test_the_server_process_never_loads_torch(request, fixtures_dir, model, record_property):
    """CTranslate2 needs neither torch nor transformers: after transcriptions the server's process (not only its
    imports: the tokenizer and the model loading too) has no torch library mapped. Its peak memory is reported
    (`-rA` or the junit XML); the side-by-side numbers are `make bench-cpu`'s."""
    server = request.getfixturevalue(model)
    for fmt in ("json", "verbose_json"):
        with open(fixtures_dir / "jfk.wav", "rb") as f:
            out = client(server).audio.transcriptions.create(
                model="whisper", file=f, response_format=fmt, language="en"
            )
        assert wer(reference(fixtures_dir, "jfk"), out.text) < 0.15, out.text
    assert torch_libraries(server.proc.pid) == set()
    peak = vm_hwm_mib(server.proc.pid)
    record_property("VmHWM_MiB", peak)
    print(f"{model} server VmHWM: {peak} MiB")


def test_word_timestamps_load_torch_on_demand(start_server, model_tiny_en, fixtures_dir):
    """The aligner (the checkpoint in torch) is the one part that needs torch: it is loaded by the first request
    for words, in a server of its own here so that the other tests' server stays without it."""
    server = start_server(model_tiny_en, ENGINE="ctranslate2", SERVED_MODEL_NAME="whisper-tiny.en")
    try:
        assert torch_libraries(server.proc.pid) == set()
        with open(fixtures_dir / "jfk.wav", "rb") as f:
            out = client(server).audio.transcriptions.create(
                model="whisper", file=f, response_format="verbose_json", timestamp_granularities=["word"]
            )
        words = [w.word.strip(" ,.").lower() for w in out.words or []]
        assert words[:4] == ["and", "so", "my", "fellow"], words
        assert all(a.start <= b.start for a, b in zip(out.words, out.words[1:], strict=False)), out.words
        assert torch_libraries(server.proc.pid) != set()
    finally:
        server.stop()
