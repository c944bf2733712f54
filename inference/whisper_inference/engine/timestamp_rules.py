"""openai/whisper's timestamp decoding rules (ApplyTimestampRules), batched over the rows of a logits tensor.

Without them a timed decode ends early: after closing a segment (`... text <|11.00|>`) the single
likeliest token is often <|endoftext|> even when the timestamps together are far likelier, and the
rest of the window (the next sentences) is dropped. Pure torch, no vLLM: unit-tested on tensors.
"""

from __future__ import annotations

import torch

# how vLLM finds the processor (engine/logits.py), and the SamplingParams.extra_args key that switches it on
# for one request: {"opening": [the prompt's opening timestamp], "timestamp_begin": int, "eot": int}
LOGITS_PROCESSOR = "whisper_inference.engine.logits:WhisperTimestampRules"
EXTRA_ARG = "whisper_timestamps"


def _row_rule(seq: list[int], timestamp_begin: int) -> tuple[bool, bool, int]:
    """(mask text and the end?, mask every timestamp?, first timestamp allowed) for one sequence."""
    last_ts = len(seq) >= 1 and seq[-1] >= timestamp_begin
    penultimate_ts = len(seq) < 2 or seq[-2] >= timestamp_begin
    mask_text = last_ts and not penultimate_ts  # a segment's text just ended: close it, or end the window
    mask_stamps = last_ts and penultimate_ts  # a pair closed (or the window just opened): text must follow
    floor = timestamp_begin
    for t in reversed(seq):
        if t >= timestamp_begin:
            # the closing timestamp may equal the opening one; the next opening must be strictly later
            floor = t if mask_text else t + 1
            break
    return mask_text, mask_stamps, floor


def _to(device: torch.device, values: list[int]) -> torch.Tensor:
    """A small index tensor on `device`, copied without blocking the host (from pinned memory) on a GPU."""
    t = torch.tensor(values, dtype=torch.long)
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


def apply_timestamp_rules_batch(
    logits: torch.Tensor, rows: list[int], seqs: list[list[int]], timestamp_begin: int, eot: int
) -> torch.Tensor:
    """Mask `logits[rows[i]]` given `seqs[i]`, the tokens sampled since the prompt's task tokens (starting with
    the window's opening timestamp, the prompt's <|0.00|>). In place; returns `logits`.

    Rules, in openai/whisper's order: timestamps come in pairs (after `<|t|>text` only a timestamp or the end;
    after a pair, text); timestamps never go back; and when the timestamps together are likelier than any single
    text token (or <|endoftext|>), a timestamp it is. The per-row decisions are made on the host from the token
    lists, the masking on the logits' device without a synchronization: on a GPU this runs once per step for
    every timed sequence in the batch.
    """
    if not rows:
        return logits
    neg = float("-inf")
    rules = [_row_rule(seq, timestamp_begin) for seq in seqs]
    device = logits.device
    index = _to(device, rows)
    # in place on views: no copy of the [batch, vocab] tensor (this runs on every decode step)
    text_rows = [r for r, (mask_text, _, _) in zip(rows, rules, strict=True) if mask_text]
    stamp_rows = [r for r, (_, mask_stamps, _) in zip(rows, rules, strict=True) if mask_stamps]
    if text_rows:
        logits[_to(device, text_rows), :eot] = neg
    if stamp_rows:
        logits[_to(device, stamp_rows), timestamp_begin:] = neg
    stamps = logits[index, timestamp_begin:]  # [rows, 1501]: a small copy
    floor = _to(device, [r[2] - timestamp_begin for r in rules])[:, None]
    stamps.masked_fill_(torch.arange(stamps.shape[-1], device=device)[None, :] < floor, neg)
    logits[index, timestamp_begin:] = stamps
    # log_softmax's normalizer is the same on both sides of the comparison: compare raw log-sum-exp and max
    stamp_mass = torch.logsumexp(stamps.float(), dim=-1)
    best_text = logits[:, :timestamp_begin].max(dim=-1).values[index]
    force = torch.zeros(logits.shape[0], dtype=torch.bool, device=device)
    force[index] = stamp_mass > best_text
    logits[:, :timestamp_begin].masked_fill_(force[:, None], neg)
    return logits


def apply_timestamp_rules(seq: list[int], logits: torch.Tensor, timestamp_begin: int, eot: int) -> torch.Tensor:
    """The rules for one row of logits (a copy)."""
    return apply_timestamp_rules_batch(logits.clone()[None, :], [0], [seq], timestamp_begin, eot)[0]
