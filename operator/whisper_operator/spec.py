"""The WhisperEndpoint spec as one typed model: parsed once per reconcile, holding every default.

The CRD's OpenAPI schema applies the same defaults in the API server; ``tests/unit/test_operator_spec.py`` keeps the
two equal (defaults and enums), so no other module reads the raw dict or repeats a default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .chunking import ENV_NAME, ChunkingChoice, check_chunking_strategy, choose_chunking, env_override
from .errors import SpecError

IntOrPercent = int | str
MODELS_DIR = "/models"  # where spec.modelImage's models are copied (an emptyDir, or spec.modelCache mounted there)


class _Model(BaseModel):
    # the API server already validated the object against the CRD; unknown fields are the schema's business
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class GpuSpec(_Model):
    # 0: a CPU endpoint (no nvidia.com/gpu, the CPU image, float32, kept off GPU nodes)
    count: int = Field(1, ge=0, le=16)
    product: str | None = None
    min_compute_capability: str | None = None
    mixed_pool_policy: Literal["Pin", "SafestCommon"] | None = None


class RolloutSpec(_Model):
    # defaults that never need a GPU beyond the replicas': a full pool cannot deadlock the rollout
    strategy: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    max_surge: IntOrPercent = 0
    max_unavailable: IntOrPercent = 1


class ServiceSpec(_Model):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: int = Field(80, ge=1, le=65535)


class SecretRef(_Model):
    name: str
    key: str = "api-key"


class ModelCache(_Model):
    claim_name: str
    mount_path: str = "/models"
    read_only: bool = False


class Resources(_Model):
    limits: dict[str, IntOrPercent] = Field(default_factory=dict)
    requests: dict[str, IntOrPercent] = Field(default_factory=dict)


class EndpointSpec(_Model):
    model: str = Field(min_length=1)
    served_model_name: str | None = None
    replicas: int = Field(1, ge=0)
    image: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    model_image: str | None = None
    engine: Literal["auto", "vllm", "ctranslate2"] = "auto"
    architectures: list[str] = Field(default_factory=lambda: ["amd64"])
    gpu: GpuSpec = Field(default_factory=lambda: GpuSpec.model_validate({}))
    dtype: Literal["auto", "half", "bfloat16", "float32"] = "auto"
    kv_cache_dtype: Literal["auto", "fp8", "fp16", "fp32"] = "auto"
    attention_backend: Literal["auto", "FLASH_ATTN", "TRITON_ATTN"] = "auto"
    timestamps: Literal["auto", "none", "segments"] = "auto"
    language_force: str | None = None
    max_audio_seconds: int | None = None
    window_seconds: float | None = None
    chunking_strategy: str | None = Field(None, max_length=1024)
    termination_grace_period_seconds: int | None = None
    resources: Resources = Field(default_factory=lambda: Resources.model_validate({}))
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    env: list[dict[str, Any]] = Field(default_factory=list)
    service: ServiceSpec = Field(default_factory=lambda: ServiceSpec.model_validate({}))
    rollout: RolloutSpec = Field(default_factory=lambda: RolloutSpec.model_validate({}))
    api_key_secret_ref: SecretRef | None = None
    model_cache: ModelCache | None = None

    @model_validator(mode="after")
    def _model_image_needs_a_writable_models(self) -> EndpointSpec:
        cache = self.model_cache
        if self.model_image and cache and cache.read_only and cache.mount_path.rstrip("/") == MODELS_DIR:
            raise ValueError(f"modelImage copies into {MODELS_DIR}, which modelCache mounts read-only")
        return self

    @field_validator("chunking_strategy")
    @classmethod
    def _chunking_strategy(cls, v: str | None) -> str | None:
        if v is None:
            return None
        return check_chunking_strategy(v)

    @model_validator(mode="after")
    def _one_chunking_strategy(self) -> EndpointSpec:
        entry = env_override(self.env)
        if entry is None:
            return self
        if self.chunking_strategy is not None:
            raise ValueError(
                f"chunkingStrategy and an env entry {ENV_NAME} both set the server's chunking strategy: keep one "
                "(chunkingStrategy is the typed field)"
            )
        if isinstance(entry.get("value"), str) and entry["value"].strip():
            try:  # the server would refuse it at start-up, in a crash loop
                check_chunking_strategy(entry["value"])
            except ValueError as exc:
                raise ValueError(f"env {ENV_NAME} {exc}") from None
        return self

    @property
    def served_name(self) -> str:
        return self.served_model_name or self.model

    @property
    def on_cpu(self) -> bool:
        """A CPU endpoint: its pods request no GPU."""
        return self.gpu.count == 0

    @property
    def engine_name(self) -> str:
        """The server's ENGINE: auto is CTranslate2 int8 on CPU endpoints (faster than vLLM's CPU path there,
        README's benchmark), vLLM on GPUs."""
        if self.engine != "auto":
            return self.engine
        return "ctranslate2" if self.on_cpu else "vllm"

    @property
    def chunking(self) -> ChunkingChoice:
        """The server's CHUNKING_STRATEGY: the spec's, else spec.env's, else auto on CPU endpoints (VAD windows) and
        none on GPU endpoints."""
        return choose_chunking(self.chunking_strategy, self.on_cpu, self.env)


def parse_spec(raw: dict[str, Any] | None) -> EndpointSpec:
    """The typed spec of a WhisperEndpoint. A spec the model refuses (only possible when the CRD in the cluster is
    older or newer than the operator) becomes a SpecError, i.e. a Degraded condition, not a crash."""
    try:
        return EndpointSpec.model_validate(raw or {})
    except ValidationError as e:
        first = e.errors()[0]
        where = "".join(f".{p}" for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")  # pydantic's prefix for our validators' ValueErrors
        raise SpecError("InvalidSpec", f"spec{where}: {msg}") from e
