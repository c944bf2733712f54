"""GPU check of the timestamp rules (engine/timestamp_rules.py), which run on every decode step of timed requests.

Run from the repository root on a CUDA machine with torch and the project installed (`make venv`, or
`pip install --no-deps -e .`): `python -m bench.gpu_timestamp_rules`. It reports host
synchronizations (there must be none: a sync per step would stall the GPU), the time per step for a 128-row batch,
and whether CPU and GPU mask the same tokens. Exits 1 when a check fails, 2 without CUDA.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch

from whisper_inference.engine.timestamp_rules import apply_timestamp_rules, apply_timestamp_rules_batch

TS, EOT, VOCAB, ROWS = 50364, 50257, 51865, 128


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 2
    logits = torch.randn(ROWS, VOCAB, device="cuda")
    seqs = [[TS, 100, 200, TS + 50, TS + 50, 300] * 5 for _ in range(ROWS)]
    apply_timestamp_rules_batch(logits, list(range(ROWS)), seqs, TS, EOT)
    torch.cuda.synchronize()

    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_timestamp_rules_batch(logits, list(range(0, ROWS, 2)), seqs[: ROWS // 2], TS, EOT)
    torch.cuda.set_sync_debug_mode(0)
    syncs = [f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
    print("host synchronizations:", len(syncs), syncs)

    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(100):
        apply_timestamp_rules_batch(logits, list(range(ROWS)), seqs, TS, EOT)
    torch.cuda.synchronize()
    print(f"{(time.perf_counter() - began) * 10:.3f} ms per step, {ROWS} rows, {torch.cuda.get_device_name()}")

    seq = [TS, 100, TS + 550]
    same = torch.equal(
        torch.isinf(apply_timestamp_rules(seq, torch.zeros(VOCAB), TS, EOT)),
        torch.isinf(apply_timestamp_rules(seq, torch.zeros(VOCAB, device="cuda"), TS, EOT).cpu()),
    )
    print("CPU and GPU mask the same tokens:", same)
    return 0 if same and not syncs else 1


if __name__ == "__main__":
    sys.exit(main())
