"""Candidate node selection (pure): which nodes could run an endpoint's pods, and what GPU they carry.

A node is a candidate when it is schedulable, has at least ``spec.gpu.count`` allocatable ``nvidia.com/gpu``,
matches ``spec.nodeSelector``, the required node affinity and ``spec.architectures``, and every NoSchedule/NoExecute
taint is tolerated. A taint keyed by a requested extended resource (``nvidia.com/gpu``) counts as tolerated: GKE
taints GPU nodes so and relies on the ExtendedResourceToleration admission plugin, and the operator also puts that
toleration on the pod template (so the plugin need not be enabled).
Nodes are plain dicts in the API's JSON shape (camelCase), as returned by the Kubernetes API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .gpu_catalog import compute_capability_for_product
from .spec import EndpointSpec

GPU_RESOURCE = "nvidia.com/gpu"
LABEL_MAJOR = "nvidia.com/gpu.compute.major"
LABEL_MINOR = "nvidia.com/gpu.compute.minor"
LABEL_PRODUCT = "nvidia.com/gpu.product"
LABEL_MEMORY = "nvidia.com/gpu.memory"
LABEL_REPLICAS = "nvidia.com/gpu.replicas"  # > 1: the device plugin time-slices each GPU
LABEL_ARCH = "kubernetes.io/arch"


@dataclass(frozen=True)
class GpuNode:
    name: str
    labels: dict[str, str]
    gpus: int
    cc: tuple[int, int] | None = None
    product: str | None = None
    memory_mib: int | None = None
    uid: str = ""

    @property
    def has_compute_labels(self) -> bool:
        return LABEL_MAJOR in self.labels and LABEL_MINOR in self.labels

    @property
    def shared(self) -> str | None:
        """Why this node's nvidia.com/gpu is not a whole GPU (MIG slice or time-slicing), or None."""
        tokens = set(re.split(r"[^A-Z0-9]+", (self.product or "").upper()))
        if "MIG" in tokens:
            return "its nvidia.com/gpu is a MIG slice"
        if "SHARED" in tokens or _quantity_int(self.labels.get(LABEL_REPLICAS)) > 1:
            return "its GPUs are time-sliced (shared between pods)"
        return None


def _quantity_int(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def parse_cc(text: str | None) -> tuple[int, int] | None:
    """'8.9' -> (8, 9); None or garbage -> None."""
    if not text:
        return None
    try:
        major, _, minor = str(text).partition(".")
        return int(major), int(minor or 0)
    except ValueError:
        return None


def gpu_node(node: dict[str, Any], probed: dict[str, dict[str, Any]] | None = None) -> GpuNode:
    """Describe a node's GPU from its labels: compute labels, then the product map, then a probe answer (keyed by
    node uid, so a replaced node of the same name is probed again)."""
    meta = node.get("metadata") or {}
    name = meta.get("name", "")
    uid = meta.get("uid") or ""
    labels = dict(meta.get("labels") or {})
    status = node.get("status") or {}
    gpus = _quantity_int((status.get("allocatable") or status.get("capacity") or {}).get(GPU_RESOURCE, 0))
    product = labels.get(LABEL_PRODUCT)
    memory = _quantity_int(labels.get(LABEL_MEMORY)) or None
    cc: tuple[int, int] | None = None
    if LABEL_MAJOR in labels:
        try:
            cc = (int(labels[LABEL_MAJOR]), int(labels.get(LABEL_MINOR, "0")))
        except ValueError:
            cc = None
    if cc is None and product:
        cc = compute_capability_for_product(product)
    if cc is None and probed and uid in probed and "major" in probed[uid]:
        answer = probed[uid]
        cc = (int(answer["major"]), int(answer.get("minor", 0)))
        product = product or answer.get("product")
        memory = memory or answer.get("memoryMiB")
    return GpuNode(name=name, labels=labels, gpus=gpus, cc=cc, product=product, memory_mib=memory, uid=uid)


def _match_expression(labels: dict[str, str], expr: dict[str, Any]) -> bool:
    key, op, values = str(expr.get("key") or ""), expr.get("operator"), expr.get("values") or []
    have = key in labels
    if op == "In":
        return have and labels[key] in values
    if op == "NotIn":
        return not have or labels[key] not in values
    if op == "Exists":
        return have
    if op == "DoesNotExist":
        return not have
    if op in ("Gt", "Lt"):
        try:
            left, right = int(labels[key]), int(values[0])
        except (KeyError, IndexError, ValueError):
            return False
        return left > right if op == "Gt" else left < right
    return False


def _match_term(node_name: str, labels: dict[str, str], term: dict[str, Any]) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term matches nothing (Kubernetes semantics)
    return all(_match_expression(labels, e) for e in exprs) and all(
        _match_expression({"metadata.name": node_name}, f) for f in fields
    )


def matches_affinity(node_name: str, labels: dict[str, str], affinity: dict[str, Any] | None) -> bool:
    required = ((affinity or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    terms = (required or {}).get("nodeSelectorTerms") or []
    if not terms:
        return True
    return any(_match_term(node_name, labels, t) for t in terms)


def tolerates(taints: list[dict[str, Any]], tolerations: list[dict[str, Any]], resources: tuple[str, ...] = ()) -> bool:
    """Every NoSchedule/NoExecute taint is tolerated by at least one toleration, or keyed by a requested extended
    resource (what ExtendedResourceToleration adds to such pods)."""
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if taint.get("key") in resources:
            continue
        ok = False
        for tol in tolerations:
            if tol.get("effect") and tol["effect"] != taint.get("effect"):
                continue
            if tol.get("operator", "Equal") == "Exists":
                ok = not tol.get("key") or tol["key"] == taint.get("key")
            else:
                ok = tol.get("key") == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or "")
            if ok:
                break
        if not ok:
            return False
    return True


def candidate_nodes(
    spec: EndpointSpec, nodes: list[dict[str, Any]], probed: dict[str, dict[str, Any]] | None = None
) -> list[GpuNode]:
    """The GPU nodes an endpoint's pods could be scheduled on, sorted by name."""
    out = []
    for node in nodes:
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        node_spec = node.get("spec") or {}
        if node_spec.get("unschedulable"):
            continue
        if any(labels.get(k) != v for k, v in spec.node_selector.items()):
            continue
        # the kubelet always sets the arch label; a node without it is taken at its word (amd64 by default)
        if labels.get(LABEL_ARCH, "amd64") not in spec.architectures:
            continue
        if not matches_affinity(meta.get("name", ""), labels, spec.affinity):
            continue
        if not tolerates(node_spec.get("taints") or [], spec.tolerations, (GPU_RESOURCE,)):
            continue
        info = gpu_node(node, probed)
        if info.gpus < spec.gpu.count:
            continue
        out.append(info)
    return sorted(out, key=lambda n: n.name)
