"""Operator settings from the environment (prefix ``KUBEWHISPER_``), validated once at startup.

A bad value stops the operator before it touches the cluster, with pydantic's message naming the variable.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBEWHISPER_", extra="ignore", frozen=True)

    default_image: str = Field(
        "ghcr.io/kubewhisper/kubewhisper-inference:0.1.0",
        min_length=1,
        description="Inference image used when an endpoint does not set spec.image (also runs the NVML probe).",
    )
    default_cpu_image: str = Field(
        "ghcr.io/kubewhisper/kubewhisper-inference:0.1.0-cpu",
        min_length=1,
        description="Inference image of CPU endpoints (spec.gpu.count 0) that do not set spec.image.",
    )
    resync_seconds: float = Field(30.0, gt=0, le=3600, description="Period of the level-based re-reconcile timer.")
    mixed_pool_policy: Literal["Pin", "SafestCommon"] = Field(
        "Pin", description="Default for spec.gpu.mixedPoolPolicy when candidate nodes differ in compute capability."
    )
    probe_enabled: bool = Field(
        True, description="Run an NVML probe Job on GPU nodes with neither GFD labels nor a known product."
    )
    probe_timeout_seconds: float = Field(
        300.0, gt=0, description="A probe that has not answered by then counts as failed."
    )
    probe_image: str | None = Field(None, description="Image of the NVML probe Job (default: default_image).")
    probe_namespace: str | None = Field(
        None, description="Namespace of the probe Jobs and of their answers' ConfigMap (default: lease_namespace)."
    )
    probe_retry_seconds: float = Field(
        60.0, gt=0, le=86400, description="First retry delay of a failed probe; doubles per failure up to 1 hour."
    )
    class_reselect_seconds: float = Field(
        900.0,
        ge=0,
        le=604800,
        description="How long the chosen GPU class may have no schedulable capacity before another is chosen.",
    )
    request_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="Timeout of every Kubernetes API request the operator makes."
    )
    startup_probe_seconds: int = Field(
        1800, ge=60, le=86400, description="How long the startupProbe lets the model load before liveness applies."
    )
    termination_grace_seconds: int = Field(60, ge=1, le=3600, description="terminationGracePeriodSeconds of the pods.")
    cluster_domain: str = Field("cluster.local", min_length=1, description="DNS suffix used in status.url.")
    leader_election: bool = Field(True, description="Hold a coordination.k8s.io Lease so only one replica is active.")
    lease_name: str = Field("kubewhisper-operator", min_length=1)
    lease_namespace: str = Field("default", min_length=1, description="Namespace of the Lease (the operator's own).")
    lease_duration_seconds: float = Field(15.0, gt=1, le=300)
    identity: str | None = Field(None, description="Holder identity in the Lease (default: hostname + pid).")
    owner_deployment: str | None = Field(
        None,
        description="The operator's own Deployment (in lease_namespace): the Lease, the probe ConfigMap and the probe "
        "Jobs it creates there get an ownerReference to it, so deleting the Deployment (helm uninstall) deletes them.",
    )
    webhook_enabled: bool = Field(False, description="Serve the validating admission webhook.")
    webhook_host: str = Field("127.0.0.1", description="Host name the API server uses to reach the webhook.")
    webhook_port: int = Field(9443, ge=1, le=65535)
    webhook_cert_file: str | None = Field(None, description="TLS certificate of the webhook server (PEM).")
    webhook_key_file: str | None = Field(None, description="TLS private key of the webhook server (PEM).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def own_namespace(self) -> str:
        return self.probe_namespace or self.lease_namespace

    @field_validator("default_image", "default_cpu_image")
    @classmethod
    def _image_has_no_spaces(cls, value: str) -> str:
        if any(c.isspace() for c in value):
            raise ValueError("an image reference cannot contain whitespace")
        return value

    def check(self) -> OperatorSettings:
        if self.webhook_enabled and not (self.webhook_cert_file and self.webhook_key_file):
            raise ValueError(
                "KUBEWHISPER_WEBHOOK_ENABLED needs KUBEWHISPER_WEBHOOK_CERT_FILE and KUBEWHISPER_WEBHOOK_KEY_FILE"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> OperatorSettings:
    from_env: dict[str, Any] = {}  # every field comes from the environment (mypy cannot see that without a plugin)
    return OperatorSettings(**from_env).check()
