"""POST /v1/audio/transcriptions and /v1/audio/translations: thin; the work is in Transcriber."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from ..audio.limits import AudioDecodeError, AudioTooLongError, AudioTooShortError
from ..audio.vad import chunking_options, form_chunking
from ..engine.text import EngineDead, EngineError
from ..formats.render import MEDIA_TYPES, RESPONSE_FORMATS, render, stream_usage
from ..languages import UnknownLanguage, normalize_language
from ..transcriber import Delta, Plan, RequestError, TranscriptionJob, UnsupportedLanguage, wants_timestamps
from .auth import require_api_key
from .cancel import ClientDisconnected, unless_disconnected
from .errors import APIError, error_body
from .state import ServerState, get_state

router = APIRouter(tags=["audio"], dependencies=[Depends(require_api_key)])
MODEL_ALIASES = ("whisper", "whisper-1")


def check_model(state: ServerState, model: str | None) -> None:
    if not model:
        raise APIError(400, "you must provide a model parameter", "model", "missing_required_parameter")
    if model not in (state.settings.model_name, *MODEL_ALIASES):
        raise APIError(
            404,
            f"The model '{model}' does not exist; this server serves "
            f"'{state.settings.model_name}' (aliases: {', '.join(MODEL_ALIASES)})",
            "model",
            "model_not_found",
        )


def check_options(
    response_format: str, temperature: float, granularities: list[str] | None, include: list[str] | None = None
) -> None:
    if response_format not in RESPONSE_FORMATS:
        raise APIError(
            400,
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}; got {response_format!r}",
            "response_format",
            "invalid_value",
        )
    if not 0.0 <= temperature <= 1.0:
        raise APIError(400, "temperature must be between 0 and 1", "temperature", "invalid_value")
    for g in granularities or []:
        if g not in ("segment", "word"):
            raise APIError(
                400,
                f"timestamp_granularities[] must be segment or word; got {g!r}",
                "timestamp_granularities",
                "invalid_value",
            )
    for item in include or []:
        if item != "logprobs":
            raise APIError(400, f"include[] may only hold logprobs; got {item!r}", "include", "invalid_value")
        if response_format != "json":
            raise APIError(400, "logprobs only works with response_format set to json", "include", "unsupported_value")
    if granularities and response_format != "verbose_json":
        raise APIError(
            400,
            "response_format must be set to verbose_json to use timestamp granularities",
            "timestamp_granularities",
            "invalid_value",
        )


def check_ready(state: ServerState) -> None:
    if state.draining:
        raise APIError(503, "server is shutting down", None, "shutting_down", {"Retry-After": "5"})
    if not state.ready:
        raise APIError(503, "model is still loading", None, "not_ready", {"Retry-After": "5"})


def client_error(exc: AudioDecodeError | RequestError) -> APIError:
    """The API's answer to a domain error: the domain says what is wrong, this layer picks OpenAI's code."""
    if isinstance(exc, AudioDecodeError):
        code = "invalid_audio"
        if isinstance(exc, AudioTooLongError):
            code = "audio_too_long"
        elif isinstance(exc, AudioTooShortError):
            code = "audio_too_short"
        return APIError(400, str(exc), "file", code)
    code = "unsupported_language" if isinstance(exc, UnsupportedLanguage) else "invalid_value"
    return APIError(400, str(exc), exc.param, code)


def sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


async def handle(
    request: Request,
    state: ServerState,
    *,
    task: str,
    file: UploadFile | None,
    model: str | None,
    language: str | None,
    prompt: str | None,
    response_format: str,
    temperature: float,
    granularities: list[str] | None = None,
    stream: bool = False,
    include: list[str] | None = None,
    max_words_per_cue: int | None = None,
    chunking: object = None,
) -> Response:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise APIError(
            400,
            "send the request as multipart/form-data with a file part (as the OpenAI API expects)",
            None,
            "invalid_content_type",
        )
    check_model(state, model)
    check_options(response_format, temperature, granularities, include)
    cue_words = state.settings.subtitle_max_words if max_words_per_cue is None else max_words_per_cue
    if not 0 <= cue_words <= 100:
        raise APIError(400, "max_words_per_cue must be between 0 and 100", "max_words_per_cue", "invalid_value")
    cue_words = cue_words if response_format in ("srt", "vtt") else 0
    try:
        vad = state.settings.default_vad if chunking is None else chunking_options(chunking)
    except ValueError as exc:
        raise APIError(400, f"chunking_strategy {exc}", "chunking_strategy", "invalid_value") from None
    if file is None:
        raise APIError(
            400, "you must provide a file parameter (multipart/form-data upload)", "file", "missing_required_parameter"
        )
    if language:
        try:
            language = normalize_language(language)
        except UnknownLanguage as exc:
            raise APIError(400, str(exc), "language", "unsupported_language") from None
    check_ready(state)
    if task == "translate" and not state.engine.vocab.multilingual:
        raise APIError(
            400, f"model {state.settings.model_name} is English-only and cannot translate", "model", "unsupported_task"
        )
    job = TranscriptionJob(
        audio=await file.read(),
        task=task,
        language=language or None,
        prompt=prompt or None,
        temperature=temperature,
        show_timestamps=wants_timestamps(state.settings.timestamps_policy, response_format),
        logprobs=bool(include),
        words="word" in (granularities or []) or cue_words > 0,
        show_segments=not granularities or "segment" in granularities,
        vad=vad,
    )
    transcriber = state.transcriber
    try:
        async with state.admission.admit():
            plan = await unless_disconnected(request, transcriber.plan(job))
            request.state.audio_seconds = plan.duration
            if stream:
                return streaming_response(state, transcriber.stream(job, plan), plan, job.logprobs)
            transcript = await unless_disconnected(request, transcriber.run(job, plan))
    except (AudioDecodeError, RequestError) as exc:
        raise client_error(exc) from None
    except EngineError as exc:
        raise engine_error(state, exc) from None
    except ClientDisconnected:
        return Response(status_code=499)  # nobody is listening; the engine work was aborted
    body = render(transcript, response_format, cue_words)
    if isinstance(body, dict):
        return JSONResponse(body)
    return PlainTextResponse(body, media_type=MEDIA_TYPES[response_format])


def engine_error(state: ServerState, exc: EngineError) -> APIError:
    """Count an engine failure; a dead engine also fails /health and stops the process."""
    state.metrics.engine_errors.inc()
    if isinstance(exc, EngineDead):
        state.fail(str(exc))
    return APIError(500, str(exc), None, "engine_error")


def streaming_response(
    state: ServerState, deltas: AsyncIterator[Delta], plan: Plan, with_logprobs: bool = False
) -> StreamingResponse:
    """transcript.text.delta events, then transcript.text.done; the stream then ends.

    The engine work happens while the body streams, after the handler's admission slot was given
    back, so the stream takes a slot again for its lifetime; it waits for one rather than failing
    with 429, since the response has already begun. Once begun, a stream always ends with
    transcript.text.done or an `error` event, whatever fails.
    """

    async def events() -> AsyncIterator[bytes]:
        text, tokens = "", 0
        logprobs: list[Any] = []
        async with state.admission.admit(refuse_when_full=False):
            try:
                async for delta in deltas:
                    text += delta.text
                    tokens += delta.tokens
                    event: dict[str, Any] = {"type": "transcript.text.delta", "delta": delta.text}
                    if delta.logprobs is not None:
                        logprobs += delta.logprobs
                        event["logprobs"] = [lp.as_dict() for lp in delta.logprobs]
                    yield sse(event)
            except EngineError as exc:
                err = engine_error(state, exc)
                yield sse({"type": "error", **error_body(err.status, err.message, None, err.code)})
                return
            except Exception as exc:  # a bug: still tell the client the stream is over, then let it be logged
                yield sse({"type": "error", **error_body(500, f"internal error: {type(exc).__name__}", None, None)})
                raise
        done: dict[str, Any] = {"type": "transcript.text.done", "text": text, "usage": stream_usage(plan, tokens)}
        if with_logprobs:
            done["logprobs"] = [lp.as_dict() for lp in logprobs]
        yield sse(done)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


FileParam = Annotated[
    UploadFile | None, File(description="The audio file: flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or webm")
]
ModelParam = Annotated[str | None, Form(description="The served model name, or the alias whisper / whisper-1")]
PromptParam = Annotated[
    str | None, Form(description="Text to guide style or continue a previous segment (Whisper's previous-text context)")
]
FormatParam = Annotated[str, Form(description="json, text, srt, verbose_json or vtt")]
TemperatureParam = Annotated[float, Form(description="0 for greedy decoding; up to 1 samples")]
StreamParam = Annotated[bool, Form(description="true: Server-Sent Events transcript.text.delta / transcript.text.done")]
ChunkingParam = Annotated[
    str | None,
    Form(
        description='"auto" or a server_vad object (as JSON, or as chunking_strategy[type]=server_vad, '
        "chunking_strategy[threshold], [prefix_padding_ms], [silence_duration_ms] fields): windows from speech "
        'found by Silero VAD, silence skipped; "none" (not an OpenAI value): fixed windows even when the server '
        "sets CHUNKING_STRATEGY; unset: CHUNKING_STRATEGY, else fixed windows"
    ),
]


@router.post("/v1/audio/transcriptions", summary="Transcribe audio into the input language")
async def transcriptions(
    request: Request,
    state: Annotated[ServerState, Depends(get_state)],
    file: FileParam = None,
    model: ModelParam = None,
    language: Annotated[str | None, Form(description="ISO 639-1 code of the input; omitted: detected")] = None,
    prompt: PromptParam = None,
    response_format: FormatParam = "json",
    temperature: TemperatureParam = 0.0,
    timestamp_granularities: Annotated[
        list[str] | None,
        Form(
            alias="timestamp_granularities[]",
            description="segment and/or word (verbose_json); word alone lists words without segments",
        ),
    ] = None,
    stream: StreamParam = False,
    include: Annotated[
        list[str] | None,
        Form(alias="include[]", description="logprobs: each text token's log probability (json and stream only)"),
    ] = None,
    max_words_per_cue: Annotated[
        int | None,
        Form(
            description="srt/vtt only (not an OpenAI field): cues of at most this many timed words; 0: one per segment"
        ),
    ] = None,
    chunking_strategy: ChunkingParam = None,
) -> Response:
    return await handle(
        request,
        state,
        task="transcribe",
        file=file,
        model=model,
        language=language,
        prompt=prompt,
        response_format=response_format,
        temperature=temperature,
        granularities=timestamp_granularities,
        stream=stream,
        include=include,
        max_words_per_cue=max_words_per_cue,
        chunking=form_chunking(await request.form()) if chunking_strategy is None else chunking_strategy,
    )


@router.post("/v1/audio/translations", summary="Translate audio into English")
async def translations(
    request: Request,
    state: Annotated[ServerState, Depends(get_state)],
    file: FileParam = None,
    model: ModelParam = None,
    prompt: PromptParam = None,
    response_format: FormatParam = "json",
    temperature: TemperatureParam = 0.0,
    # not an OpenAI field of translations: here so that a request can opt out of (or into) CHUNKING_STRATEGY too
    chunking_strategy: ChunkingParam = None,
) -> Response:
    return await handle(
        request,
        state,
        task="translate",
        file=file,
        model=model,
        language=None,
        prompt=prompt,
        response_format=response_format,
        temperature=temperature,
        chunking=form_chunking(await request.form()) if chunking_strategy is None else chunking_strategy,
    )
