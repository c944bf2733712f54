"""make bench's verdicts on issue 13's targets (bench/run.py target_rows): each ratio points the right way."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


def workloads(rtfx: float, wer: float) -> dict:
    return {"results": {w: {"rtfx": rtfx, "wer": wer} for w in ("short c=1", "short c=8", "long c=1", "long c=8")}}


def verdicts(rows: dict, inproc: dict) -> dict[tuple[str, str, str], bool]:
    from bench import run

    return {(t, row, w): met for t, row, w, _, _, met in run.target_rows(rows, inproc)}


def all_rows(**changes: dict) -> dict:
    from bench import run

    rows = {
        run.BASELINE: workloads(10.0, 0.08),
        run.CT2_JSON: workloads(12.0, 0.07),
        run.CT2_VAD: workloads(16.0, 0.05),
        run.VLLM_SERVE: workloads(20.0, 0.12),
        run.VLLM_JSON: workloads(20.0, 0.06),
        run.VLLM_VAD: workloads(25.0, 0.05),
        "kubewhisper ctranslate2, verbose_json": workloads(11.0, 0.07),
        "kubewhisper vllm, verbose_json": workloads(10.0, 0.06),
    }
    return rows | changes


def test_rtfx_targets_need_1x_alone_and_1_5x_at_concurrency_8():
    from bench import run

    v = verdicts(all_rows(), {})
    assert v[("RTFx vs faster-whisper int8 sequential", run.CT2_JSON, "short c=1")]  # 1.2x >= 1.0x
    assert not v[("RTFx vs faster-whisper int8 sequential", run.CT2_JSON, "long c=8")]  # 1.2x < 1.5x
    assert v[("RTFx vs faster-whisper int8 sequential", run.CT2_VAD, "long c=8")]  # 1.6x


def test_wer_targets_compare_with_the_right_baseline():
    from bench import run

    v = verdicts(all_rows(), {})
    assert v[("mean WER vs faster-whisper sequential", run.CT2_JSON, "long")]  # 0.07 <= 0.08
    assert v[("long audio WER vs vllm serve", run.VLLM_JSON, "long")]  # 0.06 <= 0.12 / 2
    worse = verdicts(all_rows(**{run.VLLM_JSON: workloads(20.0, 0.07)}), {})
    assert not worse[("long audio WER vs vllm serve", run.VLLM_JSON, "long")]  # 0.07 > 0.06


def test_verbose_json_time_is_json_rtfx_over_verbose_rtfx():
    v = verdicts(all_rows(), {})
    assert v[("verbose_json time vs json", "kubewhisper ctranslate2", "long c=1")]  # 12/11 = 1.09x
    assert not v[("verbose_json time vs json", "kubewhisper vllm", "long c=1")]  # 20/10 = 2.0x


def test_http_overhead_is_measured_against_the_in_process_row():
    from bench import run

    inproc = {run.VLLM_JSON: workloads(20.5, 0.06), run.CT2_JSON: workloads(13.0, 0.07)}
    v = verdicts(all_rows(), inproc)
    assert v[("HTTP overhead vs in-process", run.VLLM_JSON, "long c=1")]  # 1 - 20/20.5 = 2.4%
    assert not v[("HTTP overhead vs in-process", run.CT2_JSON, "long c=1")]  # 1 - 12/13 = 7.7%
