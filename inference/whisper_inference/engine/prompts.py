"""Decoder prompts for Whisper, as token ids: previous text, language, task, timestamps."""

from __future__ import annotations

from .vocab import WhisperVocab

# Whisper keeps at most half its 448-token context for the previous-text prompt (openai/whisper).
MAX_PREVIOUS_TOKENS = 223


def decoder_prompt(
    vocab: WhisperVocab, *, language: str | None, task: str, timestamps: bool, previous: list[int] | None = None
) -> list[int]:
    """<|startofprev|> prev... <|startoftranscript|> [<|lang|> <|task|>] (<|notimestamps|> | <|0.00|>).

    English-only models take no language or task token: with them they drop punctuation.
    With timestamps the window opens with <|0.00|>: Whisper's decoding rules require a timestamp as
    the first token, and vLLM has no per-position constraint, so the prompt supplies it; left free,
    the model may answer <|nocaptions|> and stop.
    """
    ids: list[int] = []
    if previous and vocab.startofprev is not None:
        ids += [vocab.startofprev, *previous[-MAX_PREVIOUS_TOKENS:]]
    ids.append(vocab.sot)
    if vocab.multilingual:
        if language is None:
            raise ValueError("multilingual models need a language token (detect it first)")
        ids.append(vocab.languages[language])
        task_token = vocab.translate if task == "translate" else vocab.transcribe
        if task_token is None:
            raise ValueError(f"the model's vocabulary has no {task} token")
        ids.append(task_token)
    ids.append(vocab.timestamp_begin if timestamps else vocab.notimestamps)
    return ids
