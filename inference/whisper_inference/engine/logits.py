"""The timestamp rules as a vLLM v1 logits processor, enabled per request through SamplingParams.extra_args.

vLLM loads it in its engine process by name (timestamp_rules.LOGITS_PROCESSOR); only that process imports vLLM here.
It is batched (not vLLM's per-request AdapterLogitsProcessor): one set of tensor operations per step for all
timed sequences, instead of a few per sequence.
"""

from __future__ import annotations

import torch
from vllm import SamplingParams
from vllm.config import VllmConfig
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from .timestamp_rules import EXTRA_ARG, apply_timestamp_rules_batch


class WhisperTimestampRules(LogitsProcessor):
    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool):
        # batch row -> (opening tokens, the request's live output token list, timestamp_begin, eot)
        self.rows: dict[int, tuple[list[int], list[int], int, int]] = {}

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token wins, so vLLM must apply it to greedy requests too

    @staticmethod
    def _new_state(
        params: SamplingParams | None, prompt_ids: list[int] | None, output_ids: list[int]
    ) -> tuple[list[int], list[int], int, int] | None:
        cfg = (params.extra_args or {}).get(EXTRA_ARG) if params is not None else None
        if not cfg:
            return None
        return list(cfg["opening"]), output_ids, int(cfg["timestamp_begin"]), int(cfg["eot"])

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.rows, batch_update, self._new_state)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return logits
        by_vocab: dict[tuple[int, int], tuple[list[int], list[list[int]]]] = {}
        for row, (opening, output_ids, ts_begin, eot) in self.rows.items():
            rows, seqs = by_vocab.setdefault((ts_begin, eot), ([], []))
            rows.append(row)
            seqs.append(opening + output_ids)
        for (ts_begin, eot), (rows, seqs) in by_vocab.items():
            logits = apply_timestamp_rules_batch(logits, rows, seqs, ts_begin, eot)
        return logits
