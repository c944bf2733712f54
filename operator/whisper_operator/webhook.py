"""Validating admission for the cross-field rules the schema cannot express (Kubernetes 1.20 has no CEL).

``check`` is the same rule set the reconciler applies (profile.compute_profile): where the webhook is not installed,
the reconciler reports the identical problem as Degraded=True instead of creating a Deployment.
A spec is refused only when it cannot run on any node that could host it now; an endpoint without candidate nodes,
or whose candidates still need an NVML probe, is admitted (nodes may come later; the status tells).
"""

from __future__ import annotations

import kopf

from .config import OperatorSettings
from .errors import NoCandidateNodes, SpecError
from .nodes import candidate_nodes
from .profile import compute_profile, required_cc


def check(spec: dict, nodes: list[dict], settings: OperatorSettings) -> str | None:
    try:
        required_cc(spec)  # unknown backends, whatever the nodes
        cands = candidate_nodes(spec, nodes)
        if not cands or any(c.cc is None for c in cands):
            return None
        compute_profile(spec, cands, settings.mixed_pool_policy)
    except NoCandidateNodes:
        return None
    except SpecError as e:
        return f"{e.reason}: {e.message}"
    return None


def configure(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    """Serve the webhook over TLS with the given certificate and keep the ValidatingWebhookConfiguration current."""
    kopf_settings.admission.server = kopf.WebhookServer(
        addr="0.0.0.0" if settings.webhook_host not in ("127.0.0.1", "localhost") else settings.webhook_host,
        port=settings.webhook_port,
        host=settings.webhook_host,
        certfile=settings.webhook_cert_file,
        pkeyfile=settings.webhook_key_file,
        cafile=settings.webhook_ca_file or settings.webhook_cert_file,
    )
    kopf_settings.admission.managed = settings.webhook_config_name
