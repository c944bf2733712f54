"""Validating admission for the cross-field rules the schema cannot express (Kubernetes 1.20 has no CEL).

``check`` is the same rule set the reconciler applies (profile.choose_pool): where the webhook is not installed, the
reconciler reports the identical problem as Degraded=True instead of creating a Deployment. A spec is refused only
when it cannot run at all (gpu.count > 1, a backend that is not encoder-decoder) or when the nodes it selects exist
and none can run it; an endpoint without candidate nodes, or whose candidates still need an NVML probe, is admitted
(nodes may come later; the status tells). The ValidatingWebhookConfiguration is the chart's
(templates/webhook.yaml): the operator only serves the webhook, it may not create or change webhook configurations.
"""

from __future__ import annotations

from typing import Any

import kopf

from .config import OperatorSettings
from .cpu_profile import check_cpu_spec
from .errors import SpecError
from .nodes import candidate_nodes
from .profile import check_spec, choose_pool
from .spec import parse_spec


def check(raw_spec: dict[str, Any], nodes: list[dict[str, Any]], settings: OperatorSettings) -> str | None:
    try:
        spec = parse_spec(raw_spec)
        if spec.on_cpu:
            check_cpu_spec(spec)
            return None
        check_spec(spec)
        cands = candidate_nodes(spec, nodes)
        if not cands or any(c.cc is None for c in cands):
            return None
        choose_pool(spec, cands, settings.mixed_pool_policy, None, 0.0, settings.class_reselect_seconds)
    except SpecError as e:
        if e.reason == "NoCandidateNodes":
            return None
        return f"{e.reason}: {e.message}"
    return None


def configure(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    """Serve the webhook over TLS with the given certificate (the configuration pointing at it is not ours)."""
    kopf_settings.admission.server = kopf.WebhookServer(
        addr="0.0.0.0" if settings.webhook_host not in ("127.0.0.1", "localhost") else settings.webhook_host,
        port=settings.webhook_port,
        host=settings.webhook_host,
        certfile=settings.webhook_cert_file,
        pkeyfile=settings.webhook_key_file,
    )
    kopf_settings.admission.managed = None
