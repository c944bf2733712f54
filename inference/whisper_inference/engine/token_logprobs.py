"""Generated tokens -> OpenAI's `logprobs: [{token, logprob, bytes}]` (include[]=logprobs)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@lru_cache(maxsize=1)
def _byte_of_char() -> dict[str, int]:
    """The inverse of byte-level BPE's byte -> printable character table (GPT-2's, which Whisper's tokenizer uses).

    Printable Latin-1 bytes stand for themselves; the others are moved to code points from 256 up, in order.
    """
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: b for b in kept}
    moved = 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + moved
            moved += 1
    return {chr(c): b for b, c in chars.items()}


def token_bytes(piece: str) -> bytes:
    """The raw bytes of one byte-level BPE token, given its vocabulary string (e.g. 'Ġhello' -> b' hello')."""
    table = _byte_of_char()
    return bytes(table[c] for c in piece if c in table)


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int]

    def as_dict(self) -> dict[str, object]:
        return {"token": self.token, "logprob": self.logprob, "bytes": self.bytes}


def token_logprobs(pieces: list[str], logprobs: list[float]) -> list[TokenLogprob]:
    """One entry per token: its text (a token that ends inside a multi-byte character shows U+FFFD there, its
    `bytes` are exact, so a client can join the bytes of consecutive tokens), its log probability."""
    out = []
    for piece, lp in zip(pieces, logprobs, strict=True):
        raw = token_bytes(piece)
        out.append(TokenLogprob(raw.decode("utf-8", errors="replace"), round(float(lp), 6), list(raw)))
    return out
