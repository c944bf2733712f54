"""Whisper's languages: ISO 639-1 codes, the full names OpenAI returns, and request normalization."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, str], dict[str, str]]:
    # transformers (a vLLM dependency) carries Whisper's own table; reuse it rather than copy 100 rows.
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    return dict(LANGUAGES), dict(TO_LANGUAGE_CODE)


class UnknownLanguage(ValueError):
    pass


def normalize_language(value: str) -> str:
    """'en', 'EN', 'english', 'English' -> 'en'; anything else raises UnknownLanguage."""
    codes, by_name = _tables()
    key = value.strip().lower()
    if key in codes:
        return key
    if key in by_name:
        return by_name[key]
    raise UnknownLanguage(f"unsupported language {value!r}; use an ISO 639-1 code such as 'en' or 'de'")


def language_name(code: str) -> str:
    """'en' -> 'english' (verbose_json reports the full name, as OpenAI does)."""
    return _tables()[0].get(code, code)


def all_codes() -> list[str]:
    return list(_tables()[0])
