"""The server's one settings object, read from the environment and validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .audio.limits import AudioLimits

if TYPE_CHECKING:
    from .audio.vad import VadOptions

DTYPE_ALIASES = {
    "auto": "auto",
    "": "auto",
    "half": "half",
    "float16": "half",
    "fp16": "half",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}
KV_CACHE_ALIASES = {
    "auto": "auto",
    "": "auto",
    "fp8": "fp8",
    "fp16": "fp16",
    "float16": "fp16",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp32": "fp32",
    "float32": "fp32",
}


class ConfigError(ValueError):
    """Start-up configuration is invalid; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", populate_by_name=True)

    model_id: str = Field(validation_alias="MODEL_ID", description="HF model id or local path of a Whisper model")
    served_model_name: str | None = Field(None, validation_alias="SERVED_MODEL_NAME")
    dtype: str = Field("auto", validation_alias=AliasChoices("DTYPE", "VLLM_DTYPE"))
    kv_cache_dtype: str = Field("fp16", validation_alias="VLLM_KV_CACHE_DTYPE")
    attention_backend: str | None = Field(None, validation_alias="VLLM_ATTENTION_BACKEND")
    use_flashinfer: bool = Field(True, validation_alias="VLLM_USE_FLASHINFER")
    sampling_rate: int = Field(16000, ge=8000, le=48000, validation_alias="WHISPER_SAMPLING_RATE")
    # WHISPER_SEGMENT_DURATION_SEC: the old name, still read (a window of audio is not a segment of text)
    window_seconds: float = Field(
        30.0, gt=0, le=30, validation_alias=AliasChoices("WHISPER_WINDOW_SECONDS", "WHISPER_SEGMENT_DURATION_SEC")
    )
    # 0: the hard cap (audio/limits.py HARD_MAX_AUDIO_SECONDS), never unlimited
    max_audio_seconds: float = Field(3600.0, ge=0, validation_alias="MAX_AUDIO_SECONDS")
    max_decoded_mb: float = Field(2048.0, gt=0, validation_alias="MAX_DECODED_MB")
    decode_workers: int = Field(2, ge=1, le=64, validation_alias="DECODE_WORKERS")
    decode_timeout_seconds: float = Field(60.0, gt=0, validation_alias="DECODE_TIMEOUT_SECONDS")
    language_force: str | None = Field(None, validation_alias="LANGUAGE_FORCE")
    timestamps_policy: Literal["auto", "none", "segments"] = Field("auto", validation_alias="TIMESTAMPS")
    host: str = Field("0.0.0.0", validation_alias="HOST")
    port: int = Field(8080, ge=1, le=65535, validation_alias="PORT")
    max_model_len: int = Field(448, ge=64, le=448, validation_alias="MAX_MODEL_LEN")
    max_num_seqs: int | None = Field(None, ge=1, validation_alias="MAX_NUM_SEQS")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, validation_alias="GPU_MEMORY_UTILIZATION")
    log_level: str = Field("info", validation_alias="LOG_LEVEL")
    api_key: str | None = Field(None, validation_alias="API_KEY")
    api_key_file: str | None = Field(None, validation_alias="API_KEY_FILE")
    max_upload_mb: float = Field(25.0, gt=0, validation_alias="MAX_UPLOAD_MB")
    max_concurrent_requests: int = Field(8, ge=1, validation_alias="MAX_CONCURRENT_REQUESTS")
    max_queue: int = Field(32, ge=0, validation_alias="MAX_QUEUE")
    grace_period_seconds: float = Field(30.0, ge=0, validation_alias="GRACE_PERIOD_SECONDS")
    header_timeout_seconds: float = Field(30.0, gt=0, validation_alias="HEADER_TIMEOUT_SECONDS")
    body_timeout_seconds: float = Field(60.0, gt=0, validation_alias="BODY_TIMEOUT_SECONDS")
    keep_alive_seconds: int = Field(5, ge=1, validation_alias="KEEP_ALIVE_SECONDS")
    max_connections: int = Field(256, ge=1, validation_alias="MAX_CONNECTIONS")
    # unset: half of vLLM's batch (MAX_NUM_SEQS); 0: no cap (every window of a request at once)
    max_windows_per_request: int | None = Field(None, ge=0, validation_alias="MAX_WINDOWS_PER_REQUEST")
    max_prompt_chars: int = Field(2000, ge=0, validation_alias="MAX_PROMPT_CHARS")
    # word cues in srt/vtt (0: one cue per segment) and the chunking_strategy of requests that send none
    subtitle_max_words: int = Field(0, ge=0, le=100, validation_alias="SUBTITLE_MAX_WORDS")
    chunking_strategy: str = Field("", validation_alias="CHUNKING_STRATEGY")
    alignment_device: Literal["auto", "cpu", "cuda"] = Field("auto", validation_alias="WORD_ALIGNMENT_DEVICE")

    # vllm: one engine for GPUs and CPUs; ctranslate2: int8 on CPU, for CPU pools (engine/ct2_engine.py)
    engine: Literal["vllm", "ctranslate2"] = Field("vllm", validation_alias="ENGINE")
    # compute threads on CPU (CTranslate2's, and vLLM's CPU worker's when below its affinity, see cpu.vllm_thread_env);
    # unset: the container's CPU limit (cgroup), else the CPUs it may run on
    cpu_threads: int | None = Field(None, ge=1, le=1024, validation_alias="CPU_THREADS")

    @field_validator("chunking_strategy")
    @classmethod
    def _chunking(cls, v: str) -> str:
        from .audio.vad import chunking_options

        chunking_options(v)  # raises ValueError naming the problem
        return v.strip()

    @property
    def default_vad(self) -> VadOptions | None:
        """VAD options for requests that send no chunking_strategy (CHUNKING_STRATEGY)."""
        from .audio.vad import chunking_options

        return chunking_options(self.chunking_strategy)

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: object) -> str:
        key = str(v).strip().lower()
        if key not in DTYPE_ALIASES:
            raise ValueError(f"{v!r} is not one of auto, half/float16/fp16, bfloat16/bf16, float32")
        return DTYPE_ALIASES[key]

    @field_validator("kv_cache_dtype", mode="before")
    @classmethod
    def _kv(cls, v: object) -> str:
        key = str(v).strip().lower()
        if key not in KV_CACHE_ALIASES:
            raise ValueError(f"{v!r} is not one of auto, fp8, fp16, bf16, fp32")
        return KV_CACHE_ALIASES[key]

    @field_validator("language_force", "attention_backend", "served_model_name", mode="before")
    @classmethod
    def _blank_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("language_force")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        from .languages import normalize_language

        return None if v is None else normalize_language(v)

    @field_validator("attention_backend")
    @classmethod
    def _backend(cls, v: str | None) -> str | None:
        return None if v is None else v.strip().upper()

    @field_validator("api_key_file")
    @classmethod
    def _key_file(cls, v: str | None) -> str | None:
        """Fail closed: a key file that is set must hold a key (a half-written Secret must not turn auth off)."""
        if not v:
            return None
        try:
            text = Path(v).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{v} is not a readable file ({exc})") from None
        if not any(line.strip() for line in text.splitlines()):
            raise ValueError(f"{v} holds no key (one key per line)")
        return v

    @property
    def audio_limits(self) -> AudioLimits:
        return AudioLimits(max_seconds=self.max_audio_seconds, max_decoded_bytes=int(self.max_decoded_mb * 2**20))

    @property
    def model_name(self) -> str:
        """The name clients pass as `model` (besides the aliases whisper and whisper-1)."""
        return self.served_model_name or self.model_id.rstrip("/").split("/")[-1]


def _env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return "/".join(str(a) for a in alias.choices)
    return str(alias or field).upper()


def load_settings(**overrides: Any) -> Settings:
    """Read Settings from the environment; raise ConfigError naming the offending variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = str(err["loc"][0]) if err["loc"] else "?"
            name = _env_name(loc) if loc in Settings.model_fields else loc
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
