"""The compute profile of an endpoint (pure): (spec, candidate nodes) -> dtype, KV cache dtype, attention backend,
placement and the reasons for each choice.

Rules (vLLM 0.32):
- compute capability (CC) < 8.0 (Volta/Turing): DTYPE=half, VLLM_KV_CACHE_DTYPE=fp16, TRITON_ATTN, FlashInfer off;
- CC >= 8.0: DTYPE=bfloat16, KV cache follows the model dtype (``auto``), FLASH_ATTN;
- fp8 KV cache only where the hardware has native fp8 (CC >= 8.9), and only when asked for;
- explicit spec values win; values the hardware cannot run narrow the candidate nodes, and when no node is left the
  endpoint is Degraded (SpecError) instead of getting a Deployment that would crash.
Mixed pools (candidates of several CC classes): ``Pin`` pins the pods to one class (the one with the most GPUs, then
the highest CC), ``SafestCommon`` picks settings valid on the lowest CC among them and schedules on all of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from . import attention
from .errors import NoCandidateNodes, SpecError
from .gpu_catalog import _normalise
from .nodes import LABEL_MAJOR, LABEL_MINOR, LABEL_PRODUCT, GpuNode, parse_cc

DTYPE_MIN_CC = {"bfloat16": (8, 0)}
KV_MIN_CC = {"fp8": (8, 9)}


def _fmt(cc: tuple[int, int] | None) -> str:
    return f"{cc[0]}.{cc[1]}" if cc else "unknown"


@dataclass
class Profile:
    computeCapability: str
    gpuProduct: str
    dtype: str
    kvCacheDtype: str
    attentionBackend: str
    useFlashInfer: bool
    placement: str  # AllCandidates | Pinned | SafestCommon
    nodes: list[str]
    reasons: list[str] = field(default_factory=list)
    # node selector term that pins the pods (merged into spec.affinity); not part of status
    pin: dict | None = None

    def status(self) -> dict:
        out = asdict(self)
        out.pop("pin")
        return out

    def env(self) -> dict[str, str]:
        return {
            "DTYPE": self.dtype,
            "VLLM_KV_CACHE_DTYPE": self.kvCacheDtype,
            "VLLM_ATTENTION_BACKEND": self.attentionBackend,
            "VLLM_USE_FLASHINFER": "1" if self.useFlashInfer else "0",
        }


def required_cc(spec: dict) -> tuple[tuple[int, int], list[str]]:
    """The lowest CC the spec's explicit choices can run on, with what demands it."""
    need, why = (0, 0), []
    gpu = spec.get("gpu") or {}
    floor = parse_cc(gpu.get("minComputeCapability"))
    if floor:
        need, why = max(need, floor), why + [f"gpu.minComputeCapability {_fmt(floor)}"]
    dtype = spec.get("dtype") or "auto"
    if dtype in DTYPE_MIN_CC:
        need, why = max(need, DTYPE_MIN_CC[dtype]), why + [f"dtype {dtype} needs CC >= {_fmt(DTYPE_MIN_CC[dtype])}"]
    kv = spec.get("kvCacheDtype") or "auto"
    if kv in KV_MIN_CC:
        need, why = max(need, KV_MIN_CC[kv]), why + [f"kvCacheDtype {kv} needs CC >= {_fmt(KV_MIN_CC[kv])}"]
    backend = spec.get("attentionBackend") or "auto"
    if backend != "auto":
        if backend not in attention.BACKENDS:
            raise SpecError(
                "UnsupportedAttentionBackend",
                f"attentionBackend {backend!r} is not an encoder-decoder backend of vLLM 0.32 "
                f"(choose one of {', '.join(attention.CHOICES)})",
            )
        floor = attention.min_cc(backend)
        if floor:
            need, why = max(need, floor), why + [f"attentionBackend {backend} needs CC >= {_fmt(floor)}"]
    return need, why


def _reason_for(why: list[str]) -> str:
    text = " ".join(why)
    if "kvCacheDtype" in text:
        return "UnsupportedKVCacheDtype"
    if "dtype" in text:
        return "UnsupportedDtype"
    if "attentionBackend" in text:
        return "UnsupportedAttentionBackend"
    return "BelowMinComputeCapability"


def pin_term(nodes: list[GpuNode]) -> dict:
    """A nodeSelectorTerm selecting exactly this CC class: GFD compute labels, else product labels, else names."""
    if all(LABEL_MAJOR in n.labels for n in nodes):
        majors = sorted({n.labels[LABEL_MAJOR] for n in nodes})
        minors = sorted({n.labels.get(LABEL_MINOR, "0") for n in nodes})
        if len(majors) == 1 and len(minors) == 1 and all(LABEL_MINOR in n.labels for n in nodes):
            return {
                "matchExpressions": [
                    {"key": LABEL_MAJOR, "operator": "In", "values": majors},
                    {"key": LABEL_MINOR, "operator": "In", "values": minors},
                ]
            }
    if all(LABEL_PRODUCT in n.labels for n in nodes):
        return {
            "matchExpressions": [
                {"key": LABEL_PRODUCT, "operator": "In", "values": sorted({n.labels[LABEL_PRODUCT] for n in nodes})}
            ]
        }
    return {"matchFields": [{"key": "metadata.name", "operator": "In", "values": sorted(n.name for n in nodes)}]}


def compute_profile(spec: dict, candidates: list[GpuNode], default_policy: str = "Pin") -> Profile:
    """Choose the profile for an endpoint. Raises SpecError (Degraded) when nothing can work."""
    gpu = spec.get("gpu") or {}
    reasons: list[str] = []
    known = [n for n in candidates if n.cc is not None]
    for n in candidates:
        if n.cc is None:
            reasons.append(f"node {n.name}: GPU compute capability unknown, excluded")
    if not known:
        raise NoCandidateNodes(
            "no schedulable node with enough nvidia.com/gpu and a known compute capability matches the endpoint's "
            f"nodeSelector/affinity/tolerations (gpu.count={gpu.get('count', 1)})"
        )
    pool = known
    product = gpu.get("product")
    if product:
        want = _normalise(product)
        pool = [n for n in pool if n.product and want.strip() in _normalise(n.product)]
        if not pool:
            raise SpecError(
                "ProductNotFound",
                f"no candidate node carries GPU product {product!r} "
                f"(candidates: {', '.join(sorted({n.product or '?' for n in known}))})",
            )
    need, why = required_cc(spec)
    able = [n for n in pool if n.cc >= need]
    if not able:
        have = ", ".join(f"{n.name}={_fmt(n.cc)}" for n in pool)
        raise SpecError(_reason_for(why), f"{'; '.join(why)}, but the candidate nodes have {have}")
    if len(able) < len(pool):
        reasons.append(f"excluded {', '.join(n.name for n in pool if n.cc < need)}: {'; '.join(why)}")

    classes: dict[tuple[int, int], list[GpuNode]] = {}
    for n in able:
        classes.setdefault(n.cc, []).append(n)
    policy = gpu.get("mixedPoolPolicy") or default_policy
    if len(classes) == 1:
        cc, chosen = next(iter(classes.items()))
        placement = "AllCandidates" if len(chosen) == len(candidates) else "Pinned"
        reasons.append(f"all {len(chosen)} usable candidate node(s) have compute capability {_fmt(cc)}")
    elif policy == "SafestCommon":
        cc, chosen = min(classes), able
        placement = "SafestCommon"
        reasons.append(
            f"mixed pool ({', '.join(_fmt(c) for c in sorted(classes))}): settings valid on the lowest, "
            f"{_fmt(cc)}, on all of them"
        )
    else:
        cc, chosen = max(classes.items(), key=lambda kv: (sum(n.gpus for n in kv[1]), kv[0]))
        placement = "Pinned"
        reasons.append(
            f"mixed pool ({', '.join(_fmt(c) for c in sorted(classes))}): pinned to {_fmt(cc)}, the class "
            "with the most GPUs (then the highest capability)"
        )
    pin = None
    if len(chosen) < len(candidates):
        pin = pin_term(chosen)
        if placement == "AllCandidates":
            placement = "Pinned"

    dtype = spec.get("dtype") or "auto"
    if dtype == "auto":
        dtype = "bfloat16" if cc >= (8, 0) else "half"
        reasons.append(f"dtype {dtype}: compute capability {_fmt(cc)} {'>=' if cc >= (8, 0) else '<'} 8.0")
    else:
        reasons.append(f"dtype {dtype}: set in spec")
    kv = spec.get("kvCacheDtype") or "auto"
    if kv == "auto":
        kv = "auto" if cc >= (8, 0) else "fp16"
        reasons.append(
            "kvCacheDtype fp16 on compute capability < 8.0"
            if kv == "fp16"
            else "kvCacheDtype auto (follows the model dtype); fp8 only when asked for, on CC >= 8.9"
        )
    else:
        reasons.append(f"kvCacheDtype {kv}: set in spec")
    backend = spec.get("attentionBackend") or "auto"
    if backend == "auto":
        backend, why_backend = attention.choose(cc, kv)
        reasons.append(f"attention {backend}: {why_backend}")
    else:
        reasons.append(f"attention {backend}: set in spec")
    reasons.append("FlashInfer off: vLLM 0.32's FlashInfer backend has no encoder-decoder (cross-attention) support")

    products = sorted({n.product for n in chosen if n.product})
    return Profile(
        computeCapability=_fmt(cc),
        gpuProduct=", ".join(products) or "unknown",
        dtype=dtype,
        kvCacheDtype=kv,
        attentionBackend=backend,
        useFlashInfer=False,
        placement=placement,
        nodes=sorted(n.name for n in chosen),
        reasons=reasons,
        pin=pin,
    )
