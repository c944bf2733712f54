"""POST /v1/audio/transcriptions and /v1/audio/translations: thin; the work is in Transcriber."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..audio.decode import AudioDecodeError
from ..formats.render import MEDIA_TYPES, RESPONSE_FORMATS, render
from ..languages import UnknownLanguage, normalize_language
from ..transcriber import RequestError, TranscriptionJob, wants_timestamps
from .cancel import ClientDisconnected, unless_disconnected
from .errors import APIError
from .state import ServerState, get_state

router = APIRouter(tags=["audio"])
MODEL_ALIASES = ("whisper", "whisper-1")


def check_model(state: ServerState, model: str | None) -> None:
    if not model:
        raise APIError(400, "you must provide a model parameter", "model", "missing_required_parameter")
    if model not in (state.settings.model_name, *MODEL_ALIASES):
        raise APIError(404, f"The model '{model}' does not exist; this server serves "
                            f"'{state.settings.model_name}' (aliases: {', '.join(MODEL_ALIASES)})",
                       "model", "model_not_found")


def check_format(response_format: str) -> None:
    if response_format not in RESPONSE_FORMATS:
        raise APIError(400, f"response_format must be one of {', '.join(RESPONSE_FORMATS)}; "
                            f"got {response_format!r}", "response_format", "invalid_value")


def check_ready(state: ServerState) -> None:
    if state.draining:
        raise APIError(503, "server is shutting down", None, "shutting_down", {"Retry-After": "5"})
    if not state.ready:
        raise APIError(503, "model is still loading", None, "not_ready", {"Retry-After": "5"})


async def handle(request: Request, state: ServerState, *, task: str, file: UploadFile | None,
                 model: str | None, language: str | None, prompt: str | None, response_format: str,
                 temperature: float) -> Response:
    check_model(state, model)
    check_format(response_format)
    if file is None:
        raise APIError(400, "you must provide a file parameter (multipart/form-data upload)", "file",
                       "missing_required_parameter")
    if not 0.0 <= temperature <= 1.0:
        raise APIError(400, "temperature must be between 0 and 1", "temperature", "invalid_value")
    if language:
        try:
            language = normalize_language(language)
        except UnknownLanguage as exc:
            raise APIError(400, str(exc), "language", "unsupported_language") from None
    check_ready(state)
    job = TranscriptionJob(audio=await file.read(), task=task, language=language or None,
                           prompt=prompt or None, temperature=temperature,
                           timestamps=wants_timestamps(state.settings.timestamps, response_format))
    try:
        transcript = await unless_disconnected(request, state.transcriber.run(job))
    except AudioDecodeError as exc:
        raise APIError(400, str(exc), "file", "invalid_audio") from None
    except RequestError as exc:
        raise APIError(400, str(exc), exc.param, exc.code) from None
    except ClientDisconnected:
        return Response(status_code=499)  # nobody is listening; the engine work was aborted
    body = render(transcript, response_format)
    if isinstance(body, dict):
        return JSONResponse(body)
    return PlainTextResponse(body, media_type=MEDIA_TYPES[response_format])


FileParam = Annotated[UploadFile | None, File(description="The audio file: flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or webm")]
ModelParam = Annotated[str | None, Form(description="The served model name, or the alias whisper / whisper-1")]
PromptParam = Annotated[str | None, Form(description="Text to guide style or continue a previous segment")]
FormatParam = Annotated[str, Form(description="json, text, srt, verbose_json or vtt")]
TemperatureParam = Annotated[float, Form(description="0 for greedy decoding; up to 1 samples")]


@router.post("/v1/audio/transcriptions", summary="Transcribe audio into the input language")
async def transcriptions(request: Request, state: Annotated[ServerState, Depends(get_state)],
                         file: FileParam = None, model: ModelParam = None,
                         language: Annotated[str | None, Form(description="ISO 639-1 code of the input; omitted: detected")] = None,
                         prompt: PromptParam = None, response_format: FormatParam = "json",
                         temperature: TemperatureParam = 0.0) -> Response:
    return await handle(request, state, task="transcribe", file=file, model=model, language=language,
                        prompt=prompt, response_format=response_format, temperature=temperature)


@router.post("/v1/audio/translations", summary="Translate audio into English")
async def translations(request: Request, state: Annotated[ServerState, Depends(get_state)],
                       file: FileParam = None, model: ModelParam = None, prompt: PromptParam = None,
                       response_format: FormatParam = "json", temperature: TemperatureParam = 0.0) -> Response:
    if not state.engine.vocab or not state.engine.vocab.multilingual:
        if state.ready:
            raise APIError(400, f"model {state.settings.model_name} is English-only and cannot translate",
                           "model", "unsupported_task")
    return await handle(request, state, task="translate", file=file, model=model, language=None,
                        prompt=prompt, response_format=response_format, temperature=temperature)
