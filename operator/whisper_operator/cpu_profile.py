"""The profile of a CPU endpoint (``spec.gpu.count: 0``), pure: no GPU class, no NVML probe, float32, off GPU nodes.

CPU pools are real (development and staging clusters, small workloads): the pods request no ``nvidia.com/gpu`` and
are kept off GPU nodes by a required node affinity on the label GPU Feature Discovery puts on every GPU node
(``nvidia.com/gpu.present``), so a CPU endpoint never takes a GPU node's CPU and memory. The candidate nodes are
counted the way the scheduler will see them (the same label), so a GPU node without GFD labels counts as a CPU node.
"""

from __future__ import annotations

from typing import Any

from .errors import SpecError
from .nodes import LABEL_ARCH, matches_affinity, tolerates
from .profile import Profile, chunking_reason, engine_reason
from .spec import EndpointSpec

LABEL_GPU_PRESENT = "nvidia.com/gpu.present"
CPU_DTYPE = "float32"  # vLLM's CPU path and the CTranslate2 engine's non-int8 parts run in float32


def check_cpu_spec(spec: EndpointSpec) -> None:
    """What a CPU endpoint cannot honour (the webhook refuses it too): GPU-only fields are errors, not ignored."""
    wrong = []
    if spec.gpu.product:
        wrong.append("gpu.product")
    if spec.gpu.min_compute_capability:
        wrong.append("gpu.minComputeCapability")
    if spec.dtype not in ("auto", CPU_DTYPE):
        wrong.append(f"dtype {spec.dtype}")
    if spec.kv_cache_dtype not in ("auto", "fp32"):
        wrong.append(f"kvCacheDtype {spec.kv_cache_dtype}")
    if spec.attention_backend != "auto":
        wrong.append(f"attentionBackend {spec.attention_backend}")
    if wrong:
        raise SpecError(
            "UnsupportedOnCPU",
            f"gpu.count 0 is a CPU endpoint, which cannot honour {', '.join(wrong)} (GPU-only settings; a CPU "
            f"endpoint runs {CPU_DTYPE}): remove them, or request a GPU",
        )


def avoid_gpu_nodes_term() -> dict[str, Any]:
    """The nodeSelectorTerm ANDed into the user's affinity (the architecture term is added with every pin)."""
    return {"matchExpressions": [{"key": LABEL_GPU_PRESENT, "operator": "DoesNotExist"}]}


def cpu_nodes(spec: EndpointSpec, nodes: list[dict[str, Any]]) -> list[str]:
    """Names of the schedulable non-GPU nodes the pods could land on (nodeSelector, affinity, taints, arch)."""
    out = []
    for node in nodes:
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        node_spec = node.get("spec") or {}
        name = meta.get("name", "")
        if node_spec.get("unschedulable") or LABEL_GPU_PRESENT in labels:
            continue
        if any(labels.get(k) != v for k, v in spec.node_selector.items()):
            continue
        if labels.get(LABEL_ARCH, "amd64") not in spec.architectures:
            continue
        if not matches_affinity(name, labels, spec.affinity):
            continue
        if not tolerates(node_spec.get("taints") or [], spec.tolerations):
            continue
        out.append(name)
    return sorted(out)


def compute_cpu_profile(spec: EndpointSpec, nodes: list[dict[str, Any]]) -> Profile:
    """The CPU endpoint's profile. Raises SpecError (Degraded) for GPU-only settings."""
    check_cpu_spec(spec)
    names = cpu_nodes(spec, nodes)
    reasons = [
        "gpu.count 0: a CPU endpoint, kept off GPU nodes (nvidia.com/gpu.present DoesNotExist)",
        f"{len(names)} schedulable CPU node(s) match the endpoint"
        + ("" if names else ": the pods stay Pending until one joins"),
        f"dtype {CPU_DTYPE}: CPU",
        f"engine {spec.engine_name}: {engine_reason(spec)}",
        chunking_reason(spec),
    ]
    return Profile(
        computeCapability="none",
        gpuProduct="none",
        dtype=CPU_DTYPE,
        kvCacheDtype="auto",
        attentionBackend="none",
        useFlashInfer=False,
        placement="CPU",
        nodes=names,
        reasons=reasons,
        engine=spec.engine_name,
        chunkingStrategy=spec.chunking.value,
        pin=[avoid_gpu_nodes_term()],
        sticky=None,
        on_cpu=True,
    )
