"""The CTranslate2 engine's pure parts: batch grouping, the batcher's worker, the encoder cache, prompts, the
clean-end rule, CPU threads from the cgroup, and the log-mel spectrogram against faster-whisper's."""

from __future__ import annotations

import gc
import threading
from collections import deque

import numpy as np
import pytest

from whisper_inference.config import load_settings
from whisper_inference.cpu import cgroup_cores, quota_cores
from whisper_inference.engine.batcher import Batcher, BatchKey, EncoderCache, Work, take_batch
from whisper_inference.engine.ct2_engine import batch_key, ct2_prompt, ended_cleanly, threads_for
from whisper_inference.engine.vocab import WhisperVocab

pytestmark = pytest.mark.unit
VOCAB = WhisperVocab(
    sot=50258, eot=50257, transcribe=50359, translate=50358, startofprev=50361, notimestamps=50363,
    nospeech=50362, languages={"en": 50259, "de": 50261},
)  # fmt: skip


def work(key: BatchKey, settle=lambda r: None) -> Work:
    return Work(key, np.zeros(10, np.float32), [], settle)


def test_take_batch_serves_the_head_and_its_group_in_order_up_to_the_limit():
    a, b = BatchKey("generate", temperature=0.0), BatchKey("generate", temperature=0.2)
    q = deque([work(a), work(b), work(a), work(a), work(b)])
    items = list(q)
    first = take_batch(q, limit=2)
    assert first == [items[0], items[2]]
    assert list(q) == [items[1], items[3], items[4]]  # the rest keep their order: b is the head now
    assert take_batch(q, limit=8) == [items[1], items[4]]
    assert take_batch(q, limit=8) == [items[3]] and take_batch(q, 8) == []


def test_batch_key_separates_what_ctranslate2_cannot_batch():
    plain = [VOCAB.sot, 50259, VOCAB.transcribe, VOCAB.notimestamps]
    timed = ct2_prompt(VOCAB, [VOCAB.sot, 50259, VOCAB.transcribe, VOCAB.timestamp_begin], always_timed=False)
    assert ct2_prompt(VOCAB, plain, always_timed=True) == timed  # untimed prompts decode timed too
    assert ct2_prompt(VOCAB, plain, always_timed=False) == plain  # TIMESTAMPS=none
    prompted = [VOCAB.startofprev, 11, 12, *plain]
    assert timed == [VOCAB.sot, 50259, VOCAB.transcribe]  # CTranslate2 forces the first timestamp itself
    keys = {batch_key(p, VOCAB.sot, 0.0, 448) for p in (plain, timed, prompted)}
    assert len(keys) == 3
    german = [VOCAB.sot, 50261, VOCAB.transcribe, VOCAB.notimestamps]
    assert batch_key(plain, VOCAB.sot, 0.0, 448) == batch_key(german, VOCAB.sot, 0.0, 448)  # languages batch
    assert batch_key(plain, VOCAB.sot, 0.0, 448) != batch_key(plain, VOCAB.sot, 0.2, 448)


def test_ended_cleanly():
    assert ended_cleanly(4, 30, 448, None)
    assert not ended_cleanly(4, 443, 448, None)  # ran into the length limit: no <|endoftext|>
    assert not ended_cleanly(4, 4, 448, 4)


def test_batcher_runs_queued_work_together_and_isolates_a_failing_batch():
    started, gate, sizes, results = threading.Event(), threading.Event(), [], {}
    done = threading.Semaphore(0)

    def run(key: BatchKey, items: list[Work]):
        started.set()
        gate.wait(5)
        sizes.append(len(items))
        if key.temperature == 1.0:
            raise ValueError("boom")
        return [f"r{len(sizes)}"] * len(items)

    def settle_as(name):
        def settle(result):
            results[name] = result
            done.release()

        return settle

    batcher = Batcher(run, max_batch=8)
    try:
        k, bad = BatchKey("generate"), BatchKey("generate", temperature=1.0)
        batcher.submit(work(k, settle_as("first")))  # the worker takes it and blocks in run()
        assert started.wait(5)
        queued = [work(k, settle_as(f"w{i}")) for i in range(3)]
        for w in queued:
            batcher.submit(w)
        batcher.submit(work(bad, settle_as("bad")))
        cancelled = work(k, settle_as("cancelled"))
        batcher.submit(cancelled)
        batcher.cancel(cancelled)
        assert batcher.pending == 1 + 3 + 1
        gate.set()
        for _ in range(5):
            assert done.acquire(timeout=10)
        assert sizes == [1, 3, 1]  # the three queued windows shared one batch
        assert results["w0"] == results["w2"] == "r2" and isinstance(results["bad"], ValueError)
        assert "cancelled" not in results and batcher.pending == 0 and batcher.alive
    finally:
        batcher.stop()
    assert not batcher.alive


def test_encoder_cache_evicts_oldest_and_forgets_freed_windows():
    cache = EncoderCache(capacity=2)
    a, b, c = (np.zeros(4, np.float32) for _ in range(3))
    cache.put(a, "A")
    cache.put(b, "B")
    assert cache.get(a) == "A"  # a is now the most recent
    cache.put(c, "C")
    assert cache.get(b) is None and cache.get(a) == "A" and cache.get(c) == "C"
    del a
    gc.collect()
    assert len(cache) == 1


@pytest.mark.parametrize(
    ("quota", "period", "cores"), [("max", "100000", None), ("150000", "100000", 2), ("50000", "100000", 1),
                                   ("400000", "100000", 4), ("-1", "100000", None)]
)  # fmt: skip
def test_quota_cores(quota, period, cores):
    assert quota_cores(quota, period) == cores


def test_cgroup_v2_then_v1(tmp_path):
    v2, q, p = tmp_path / "cpu.max", tmp_path / "quota", tmp_path / "period"
    v2.write_text("300000 100000\n")
    assert cgroup_cores(v2, q, p) == 3
    q.write_text("200000\n")
    p.write_text("100000\n")
    assert cgroup_cores(tmp_path / "absent", q, p) == 2
    assert cgroup_cores(tmp_path / "absent", tmp_path / "absent", p) is None


def test_threads_from_cpu_threads_or_the_machine(monkeypatch):
    monkeypatch.setenv("MODEL_ID", "m")
    monkeypatch.setenv("CPU_THREADS", "3")
    assert threads_for(load_settings())[0] == 3
    monkeypatch.delenv("CPU_THREADS")
    assert threads_for(load_settings())[0] >= 1
    monkeypatch.setenv("ENGINE", "onnx")
    with pytest.raises(ValueError, match="ENGINE"):
        load_settings()


@pytest.mark.parametrize("seconds", [0.05, 5.0, 29.99, 30.0, 35.0])
def test_log_mel_matches_faster_whisper(seconds):
    """The CTranslate2 engine's input is faster-whisper's: the window's own spectrum, zeros after it (pad_or_trim),
    cut at 30 s. (openai/whisper's spectrum of 30 s of zero-padded audio heard fewer words of the bench clips.)"""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.feature_extractor import FeatureExtractor

    from whisper_inference.audio.mel import log_mel

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    expected = pad_or_trim(FeatureExtractor(feature_size=80)(audio[:480000]))
    got = log_mel(audio, 80)
    assert got.shape == (80, 3000) and np.abs(got - expected).max() < 1e-4
    frames = min(int(seconds * 100) + 1, 3000)  # the audio's frames and one for the hop of silence after it
    assert np.all(got[:, frames:] == 0.0)  # past them: zeros, not the clamp


def test_log_mel_for_language_detection_pads_the_audio_as_openai_whisper():
    from faster_whisper.feature_extractor import FeatureExtractor

    from whisper_inference.audio.mel import log_mel

    rng = np.random.default_rng(0)
    t = np.arange(5 * 16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    padded = np.zeros(480000, np.float32)
    padded[: audio.size] = audio
    expected = FeatureExtractor(feature_size=80)(padded)[:, :3000]
    got = log_mel(audio, 80, padding="audio")
    assert got.shape == (80, 3000) and np.abs(got - expected).max() < 1e-4
