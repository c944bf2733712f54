"""spec.chunkingStrategy -> the server's CHUNKING_STRATEGY (pure): which default, from where, and why.

The server's VAD windows (Silero speech regions, silence skipped) are the better default on CPU endpoints: on the
benchmark's long recordings with pauses the CTranslate2 engine was both faster and more accurate with them (README's
benchmark), while GPU endpoints keep fixed windows (``none``) unless the spec asks. The value is checked here with
the server's rules (inference/whisper_inference/audio/vad.py ``chunking_options``) but not with its code: the
operator's image installs no numpy, and the webhook must refuse what the server would refuse at start-up.
tests/unit/test_operator_chunking.py keeps the two in agreement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ENV_NAME = "CHUNKING_STRATEGY"
SERVER_VAD_FIELDS = {"type", "threshold", "prefix_padding_ms", "silence_duration_ms"}


def check_chunking_strategy(text: str) -> str:
    """The value as the server reads CHUNKING_STRATEGY: "auto", "none" (fixed windows) or a server_vad object as JSON
    text. Returns it stripped; raises ValueError naming the problem."""
    value = text.strip()
    if value in ("auto", "none"):
        return value
    if not value.startswith("{"):
        raise ValueError(f'must be "auto", "none" or a server_vad object as JSON; got {value!r}')
    try:
        obj = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise ValueError('must be "auto", "none" or a server_vad object as JSON')
    if obj.get("type") != "server_vad":
        raise ValueError(f'type must be "server_vad"; got {obj.get("type")!r}')
    unknown = set(obj) - SERVER_VAD_FIELDS
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    threshold = _number(obj.get("threshold", 0.5), float)
    prefix = _number(obj.get("prefix_padding_ms", 300), int)
    silence = _number(obj.get("silence_duration_ms", 500), int)
    if threshold is None or prefix is None or silence is None:
        raise ValueError("threshold must be a number, prefix_padding_ms and silence_duration_ms integers")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1; got {threshold}")
    for name, ms in (("prefix_padding_ms", prefix), ("silence_duration_ms", silence)):
        if not 0 <= ms <= 10_000:
            raise ValueError(f"{name} must be between 0 and 10000; got {ms}")
    return value


def _number(raw: Any, kind: type[float] | type[int]) -> float | None:
    """float()/int() as the server applies them (numbers or their text); None where they raise (int of an infinite
    JSON number such as 1e400 overflows). NaN stays, and no range below accepts it."""
    try:
        return float(kind(raw))
    except (TypeError, ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class ChunkingChoice:
    """What the pods get: ``value`` for status (``auto``, ``none``, the JSON, or ``spec.env`` when a valueFrom
    supplies it), ``env`` the CHUNKING_STRATEGY the operator sets (None: it sets none), and why."""

    value: str
    env: str | None
    reason: str


def env_override(env: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The spec.env entry naming CHUNKING_STRATEGY (the last one: the kubelet keeps the last of duplicates)."""
    found = [e for e in env if e.get("name") == ENV_NAME]
    return found[-1] if found else None


def choose_chunking(chunking_strategy: str | None, on_cpu: bool, env: list[dict[str, Any]]) -> ChunkingChoice:
    """spec.chunkingStrategy, else a spec.env CHUNKING_STRATEGY (the way to set it before the field existed; both
    at once are refused by the spec), else the pool's default: auto on CPU endpoints, none on GPU endpoints."""
    if chunking_strategy is not None:
        value = chunking_strategy.strip()
        return ChunkingChoice(value, None if value == "none" else value, "set in spec")
    entry = env_override(env)
    if entry is not None:
        if "value" in entry or "valueFrom" not in entry:
            value = str(entry.get("value") or "").strip() or "none"
            return ChunkingChoice(value, None, "set by spec.env CHUNKING_STRATEGY")
        return ChunkingChoice("spec.env", None, "set by spec.env CHUNKING_STRATEGY (valueFrom)")
    if on_cpu:
        return ChunkingChoice(
            "auto", "auto", "VAD windows on a CPU endpoint (silence is not decoded: faster and fewer hallucinations)"
        )
    return ChunkingChoice("none", None, "fixed windows on a GPU endpoint")
