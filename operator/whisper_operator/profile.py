"""The compute profile of an endpoint (pure), in two steps:

1. ``choose_pool``: which GPU class (compute capability, CC) the pods run on, and the node-affinity terms that pin
   them to it. The class is sticky: the one recorded in ``status.gpuClass`` is kept while the spec's GPU
   requirements are unchanged, unless it has had no schedulable capacity for ``reselect_after`` seconds; an empty
   pool (autoscaled to zero) still gets a class when the spec declares one (a known ``gpu.product``, a
   ``gpu.minComputeCapability`` or an explicit dtype/KV cache/backend), so its Deployment exists and its Pending pods
   make the autoscaler add a node.
2. ``choose_settings``: dtype, KV cache dtype and attention backend for that class (vLLM 0.32):
   CC < 8.0 (Volta/Turing): half, fp16 KV cache, TRITON_ATTN; CC >= 8.0: bfloat16, KV cache ``auto``, FLASH_ATTN;
   an fp8 KV cache only when asked for, on CC >= 8.9. Explicit spec values win. FlashInfer is always off.

Failures are SpecError with a reason code (the Degraded condition's reason); every reason line is for humans only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from . import attention
from .errors import SpecError
from .gpu_catalog import compute_capability_for_product, normalise
from .nodes import LABEL_ARCH, LABEL_MAJOR, LABEL_MINOR, LABEL_PRODUCT, GpuNode, parse_cc
from .spec import EndpointSpec

CC = tuple[int, int]
VLLM_MIN_CC: CC = (7, 0)  # vLLM's CUDA kernels need Volta or newer; Pascal (6.x) would crash-loop
DTYPE_MIN_CC: dict[str, CC] = {"bfloat16": (8, 0)}
KV_MIN_CC: dict[str, CC] = {"fp8": (8, 9)}


def fmt(cc: CC | None) -> str:
    return f"{cc[0]}.{cc[1]}" if cc else "unknown"


@dataclass(frozen=True)
class Requirement:
    """A lower bound on the compute capability, the reason code used when no node meets it, and why it exists."""

    cc: CC
    code: str
    why: str


def requirements(spec: EndpointSpec) -> list[Requirement]:
    """Every CC floor the spec implies, vLLM's own first. Unknown attention backends are refused outright."""
    out = [Requirement(VLLM_MIN_CC, "BelowVLLMMinComputeCapability", "vLLM needs compute capability >= 7.0")]
    floor = parse_cc(spec.gpu.min_compute_capability)
    if floor:
        out.append(Requirement(floor, "BelowMinComputeCapability", f"gpu.minComputeCapability {fmt(floor)}"))
    if spec.dtype in DTYPE_MIN_CC:
        need = DTYPE_MIN_CC[spec.dtype]
        out.append(Requirement(need, "UnsupportedDtype", f"dtype {spec.dtype} needs CC >= {fmt(need)}"))
    if spec.kv_cache_dtype in KV_MIN_CC:
        need = KV_MIN_CC[spec.kv_cache_dtype]
        out.append(
            Requirement(need, "UnsupportedKVCacheDtype", f"kvCacheDtype {spec.kv_cache_dtype} needs CC >= {fmt(need)}")
        )
    backend = spec.attention_backend
    if backend != "auto":
        if backend not in attention.BACKENDS:
            raise SpecError(
                "UnsupportedAttentionBackend",
                f"attentionBackend {backend!r} is not an encoder-decoder backend of vLLM 0.32 "
                f"(choose one of {', '.join(attention.CHOICES)})",
            )
        need_backend = attention.min_cc(backend)
        if need_backend:
            out.append(
                Requirement(
                    need_backend,
                    "UnsupportedAttentionBackend",
                    f"attentionBackend {backend} needs CC >= {fmt(need_backend)}",
                )
            )
    return out


def engine_reason(spec: EndpointSpec) -> str:
    if spec.engine != "auto":
        return "set in spec"
    return "CTranslate2 int8 on a CPU endpoint" if spec.on_cpu else "vLLM on GPUs"


def chunking_reason(spec: EndpointSpec) -> str:
    choice = spec.chunking
    return f"chunkingStrategy {choice.value}: {choice.reason}"


def check_spec(spec: EndpointSpec) -> None:
    """Rules that hold whatever the nodes (the webhook refuses them too)."""
    requirements(spec)
    if spec.engine == "ctranslate2" and not spec.on_cpu:
        raise SpecError(
            "UnsupportedEngine",
            f"engine ctranslate2 runs on the CPU only (int8), the {spec.gpu.count} GPU(s) would sit idle: use "
            "engine vllm (or auto) on a GPU endpoint, or gpu.count 0 for a CPU endpoint",
        )
    if spec.gpu.count > 1:
        raise SpecError(
            "MultiGPUUnsupported",
            f"gpu.count {spec.gpu.count}: the server runs Whisper on one GPU (no tensor parallelism), the other "
            f"{spec.gpu.count - 1} would be allocated and never used; set gpu.count to 1 and scale with replicas",
        )


def min_gpu_memory_mib(model: str) -> int:
    """GPU memory a model needs (weights in 16 bit plus a working KV cache), from the model name's size word;
    an unknown size is taken as the largest. Compared with nvidia.com/gpu.memory or the probe's memoryMiB."""
    tokens = set(re.split(r"[^a-z0-9]+", model.lower()))
    for size, mib in (("tiny", 2048), ("base", 2048), ("small", 4096), ("medium", 6144)):
        if size in tokens:
            return mib
    return 8192  # large, large-v3, turbo and unknown checkpoints


def product_matches(want: str, product: str | None) -> bool:
    """Whole-token match: "A10" is not the A100, "L4" not the L40S, "H20" not the H200."""
    return bool(product) and f" {normalise(want).strip()} " in normalise(product or "")


def gpu_key(spec: EndpointSpec) -> str:
    """The spec fields that decide the GPU class: the sticky class is chosen again when one of them changes."""
    fields = {
        "gpu": spec.gpu.model_dump(),
        "dtype": spec.dtype,
        "kv": spec.kv_cache_dtype,
        "backend": spec.attention_backend,
        "nodeSelector": spec.node_selector,
        "affinity": spec.affinity,
        "tolerations": spec.tolerations,
        "architectures": spec.architectures,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StickyClass:
    """``status.gpuClass``: the class chosen before, for which spec, and since when it has had no capacity."""

    cc: CC
    spec_key: str
    no_capacity_since: float | None = None

    @staticmethod
    def from_status(status: dict[str, Any] | None) -> StickyClass | None:
        raw = (status or {}).get("gpuClass") or {}
        cc = parse_cc(raw.get("computeCapability"))
        if cc is None or not raw.get("specKey"):
            return None
        since = raw.get("noCapacitySince")
        return StickyClass(cc, str(raw["specKey"]), float(since) if since is not None else None)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"computeCapability": fmt(self.cc), "specKey": self.spec_key}
        if self.no_capacity_since is not None:  # absent, not null: a stored status has no nulls to compare with
            out["noCapacitySince"] = self.no_capacity_since
        return out


@dataclass
class Pool:
    cc: CC
    placement: str  # Pinned | SafestCommon | Declared
    nodes: list[GpuNode]
    pin: list[dict[str, Any]]  # nodeSelectorTerms (ORed), each ANDed into the user's terms
    sticky: StickyClass
    reasons: list[str] = field(default_factory=list)


def _at_least(cc: CC) -> list[dict[str, Any]]:
    """nodeSelectorTerms on GFD compute labels for every class >= cc."""
    major, minor = cc
    if minor == 0:
        return [{"matchExpressions": [{"key": LABEL_MAJOR, "operator": "Gt", "values": [str(major - 1)]}]}]
    return [
        {"matchExpressions": [{"key": LABEL_MAJOR, "operator": "Gt", "values": [str(major)]}]},
        {
            "matchExpressions": [
                {"key": LABEL_MAJOR, "operator": "In", "values": [str(major)]},
                {"key": LABEL_MINOR, "operator": "Gt", "values": [str(minor - 1)]},
            ]
        },
    ]


def _exactly(cc: CC) -> dict[str, Any]:
    return {
        "matchExpressions": [
            {"key": LABEL_MAJOR, "operator": "In", "values": [str(cc[0])]},
            {"key": LABEL_MINOR, "operator": "In", "values": [str(cc[1])]},
        ]
    }


def pin_terms(cc: CC, nodes: list[GpuNode], at_least: bool, products: list[str]) -> list[dict[str, Any]]:
    """Terms pinning the pods to the class by the labels it was chosen from: the GFD compute labels (stable as
    nodes come and go), else the product labels, else (probed nodes without labels) the node names."""
    if all(n.has_compute_labels for n in nodes):
        terms = _at_least(cc) if at_least else [_exactly(cc)]
        if products:
            extra = {"key": LABEL_PRODUCT, "operator": "In", "values": products}
            terms = [{"matchExpressions": [*t["matchExpressions"], extra]} for t in terms]
        return terms
    if all(LABEL_PRODUCT in n.labels for n in nodes):
        values = sorted({n.labels[LABEL_PRODUCT] for n in nodes})
        return [{"matchExpressions": [{"key": LABEL_PRODUCT, "operator": "In", "values": values}]}]
    return [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": sorted(n.name for n in nodes)}]}]


def declared_class(spec: EndpointSpec, reqs: list[Requirement]) -> tuple[CC, str] | None:
    """The class an endpoint asks for without any node to look at: a catalogued gpu.product, or the floor of an
    explicit requirement (settings chosen for the floor are valid on every class above it)."""
    if spec.gpu.product:
        cc = compute_capability_for_product(spec.gpu.product)
        if cc is not None:
            return cc, f"gpu.product {spec.gpu.product!r} is compute capability {fmt(cc)}"
    explicit = [r for r in reqs if r.code != "BelowVLLMMinComputeCapability"]
    if explicit or spec.dtype != "auto":
        need = max(r.cc for r in reqs)
        whys = [r.why for r in explicit] or [f"dtype {spec.dtype} set in spec"]
        return need, f"{'; '.join(whys)}: compute capability >= {fmt(need)}"
    return None


def choose_pool(
    spec: EndpointSpec,
    candidates: list[GpuNode],
    default_policy: str,
    previous: StickyClass | None,
    now: float,
    reselect_after: float,
) -> Pool:
    """The GPU class and its pin. Raises SpecError when nothing can be decided or the candidates cannot run it."""
    check_spec(spec)
    reasons: list[str] = []
    reqs = requirements(spec)
    need = max(r.cc for r in reqs)
    key = gpu_key(spec)
    known = []
    for n in candidates:
        if n.cc is None:
            reasons.append(f"node {n.name}: GPU compute capability unknown, excluded")
        elif n.shared:
            reasons.append(f"node {n.name}: excluded, {n.shared}")
        elif n.memory_mib is not None and n.memory_mib < min_gpu_memory_mib(spec.model):
            reasons.append(
                f"node {n.name}: excluded, {n.memory_mib} MiB of GPU memory < {min_gpu_memory_mib(spec.model)} MiB "
                f"for {spec.model}"
            )
        else:
            known.append(n)
    pool = known
    products: list[str] = []
    if spec.gpu.product:
        pool = [n for n in known if product_matches(spec.gpu.product, n.product)]
        products = sorted({n.labels[LABEL_PRODUCT] for n in pool if LABEL_PRODUCT in n.labels})
    able = [n for n in pool if n.cc is not None and n.cc >= need]
    if pool and not able:
        # the nodes the endpoint selects exist and none can run it: a real conflict, not an empty pool
        failed = max((r for r in reqs if any(n.cc is not None and n.cc < r.cc for n in pool)), key=lambda r: r.cc)
        have = ", ".join(f"{n.name}={fmt(n.cc)}" for n in pool)
        raise SpecError(failed.code, f"{failed.why}, but the candidate nodes have {have}")
    if len(able) < len(pool):
        below = ", ".join(n.name for n in pool if n.cc is not None and n.cc < need)
        reasons.append(f"excluded {below}: below compute capability {fmt(need)}")
    if spec.gpu.product and not pool and compute_capability_for_product(spec.gpu.product) is None:
        raise SpecError(
            "ProductNotFound",
            f"no candidate node carries GPU product {spec.gpu.product!r} and it is not a known product "
            f"(candidates: {', '.join(sorted({n.product or '?' for n in known})) or 'none'})",
        )

    classes: dict[CC, list[GpuNode]] = {}
    for n in able:
        assert n.cc is not None
        classes.setdefault(n.cc, []).append(n)
    policy = spec.gpu.mixed_pool_policy or default_policy
    at_least = policy == "SafestCommon"

    def members(cc: CC) -> list[GpuNode]:
        return [n for c, ns in classes.items() if (c >= cc if at_least else c == cc) for n in ns]

    # the sticky class: kept while the spec's GPU fields are unchanged, unless without capacity for too long
    if previous is not None and previous.spec_key == key and previous.cc >= need:
        chosen = members(previous.cc)
        if chosen:
            reasons.append(f"keeping compute capability {fmt(previous.cc)} (chosen before; avoids a reload)")
            return Pool(
                previous.cc,
                "SafestCommon" if at_least and len(classes) > 1 else "Pinned",
                chosen,
                pin_terms(previous.cc, chosen, at_least, products),
                StickyClass(previous.cc, key),
                reasons,
            )
        since = previous.no_capacity_since if previous.no_capacity_since is not None else now
        if now - since < reselect_after or not classes:
            reasons.append(
                f"keeping compute capability {fmt(previous.cc)}: no schedulable capacity for {int(now - since)}s "
                f"(another class is chosen after {int(reselect_after)}s)"
            )
            return Pool(
                previous.cc,
                "Pinned" if classes else "Declared",
                [],
                pin_terms(previous.cc, [], at_least, products),
                StickyClass(previous.cc, key, since),
                reasons,
            )
        reasons.append(f"compute capability {fmt(previous.cc)} had no capacity for {int(now - since)}s: re-chosen")

    if not classes:
        declared = declared_class(spec, reqs)
        if declared is None:
            raise SpecError(
                "NoCandidateNodes",
                "no schedulable node with enough nvidia.com/gpu and a known compute capability matches the "
                "endpoint's nodeSelector/affinity/tolerations, and the spec declares no GPU class to wait for "
                "(set gpu.product, gpu.minComputeCapability or dtype)",
            )
        cc, why = declared
        at_least = spec.gpu.product is None or compute_capability_for_product(spec.gpu.product) is None
        reasons.append(f"no candidate node yet; {why}: pods wait Pending for a node of that class")
        return Pool(cc, "Declared", [], pin_terms(cc, [], at_least, products), StickyClass(cc, key), reasons)

    if len(classes) == 1:
        cc = next(iter(classes))
        reasons.append(f"all {len(classes[cc])} usable candidate node(s) have compute capability {fmt(cc)}")
        placement = "Pinned"
    elif at_least:
        cc = min(classes)
        placement = "SafestCommon"
        reasons.append(
            f"mixed pool ({', '.join(fmt(c) for c in sorted(classes))}): settings valid on the lowest, "
            f"{fmt(cc)}, on all of them"
        )
    else:
        cc = max(classes, key=lambda c: (sum(n.gpus for n in classes[c]), c))
        placement = "Pinned"
        reasons.append(
            f"mixed pool ({', '.join(fmt(c) for c in sorted(classes))}): pinned to {fmt(cc)}, the class "
            "with the most GPUs (then the highest capability)"
        )
    chosen = members(cc)
    return Pool(cc, placement, chosen, pin_terms(cc, chosen, at_least, products), StickyClass(cc, key), reasons)


@dataclass(frozen=True)
class Settings:
    dtype: str
    kv_cache_dtype: str
    attention_backend: str
    use_flashinfer: bool
    reasons: tuple[str, ...]


def choose_settings(spec: EndpointSpec, cc: CC) -> Settings:
    """The server's settings for compute capability ``cc`` (explicit spec values win)."""
    reasons = []
    dtype = spec.dtype
    if dtype == "auto":
        dtype = "bfloat16" if cc >= (8, 0) else "half"
        reasons.append(f"dtype {dtype}: compute capability {fmt(cc)} {'>=' if cc >= (8, 0) else '<'} 8.0")
    else:
        reasons.append(f"dtype {dtype}: set in spec")
    kv = spec.kv_cache_dtype
    if kv == "auto":
        kv = "auto" if cc >= (8, 0) else "fp16"
        reasons.append(
            "kvCacheDtype fp16 on compute capability < 8.0"
            if kv == "fp16"
            else "kvCacheDtype auto (follows the model dtype); fp8 only when asked for, on CC >= 8.9"
        )
    else:
        reasons.append(f"kvCacheDtype {kv}: set in spec")
    backend: str = spec.attention_backend
    if backend == "auto":
        backend, why_backend = attention.choose(cc, kv)
        reasons.append(f"attention {backend}: {why_backend}")
    else:
        reasons.append(f"attention {backend}: set in spec")
    reasons.append("FlashInfer off: vLLM 0.32's FlashInfer backend has no encoder-decoder (cross-attention) support")
    return Settings(dtype, kv, backend, False, tuple(reasons))


@dataclass
class Profile:
    computeCapability: str
    gpuProduct: str
    dtype: str
    kvCacheDtype: str
    attentionBackend: str
    useFlashInfer: bool
    placement: str  # Pinned | SafestCommon | Declared | CPU
    nodes: list[str]
    reasons: list[str] = field(default_factory=list)
    engine: str = "vllm"
    chunkingStrategy: str = "none"  # the server's CHUNKING_STRATEGY (chunking.choose_chunking)
    # nodeSelectorTerms pinning the pods (merged into spec.affinity) and the sticky class: not part of status.profile
    pin: list[dict[str, Any]] = field(default_factory=list)
    sticky: StickyClass | None = None
    on_cpu: bool = False

    def status(self) -> dict[str, Any]:
        out = asdict(self)
        for internal in ("pin", "sticky", "on_cpu"):
            out.pop(internal)
        return out

    @property
    def accelerator(self) -> str:
        """``status.accelerator``: cpu, or the GPU product(s) and compute capability of the class."""
        return "cpu" if self.on_cpu else f"{self.gpuProduct} (CC {self.computeCapability})"

    def env(self) -> dict[str, str]:
        if self.on_cpu:  # the vLLM GPU knobs mean nothing on a CPU; the engine sizes its threads itself
            return {"ENGINE": self.engine, "DTYPE": self.dtype}
        return {
            "ENGINE": self.engine,
            "DTYPE": self.dtype,
            "VLLM_KV_CACHE_DTYPE": self.kvCacheDtype,
            "VLLM_ATTENTION_BACKEND": self.attentionBackend,
            "VLLM_USE_FLASHINFER": "1" if self.useFlashInfer else "0",
        }


def compute_profile(
    spec: EndpointSpec,
    candidates: list[GpuNode],
    default_policy: str = "Pin",
    previous: StickyClass | None = None,
    now: float = 0.0,
    reselect_after: float = 900.0,
) -> Profile:
    """Pool, then settings. Raises SpecError (Degraded, with its reason code) when nothing can work."""
    pool = choose_pool(spec, candidates, default_policy, previous, now, reselect_after)
    settings = choose_settings(spec, pool.cc)
    products = sorted({n.product for n in pool.nodes if n.product}) or ([spec.gpu.product] if spec.gpu.product else [])
    return Profile(
        computeCapability=fmt(pool.cc),
        gpuProduct=", ".join(products) or "unknown",
        dtype=settings.dtype,
        kvCacheDtype=settings.kv_cache_dtype,
        attentionBackend=settings.attention_backend,
        useFlashInfer=settings.use_flashinfer,
        placement=pool.placement,
        nodes=sorted(n.name for n in pool.nodes),
        reasons=[
            *pool.reasons,
            *settings.reasons,
            f"engine {spec.engine_name}: {engine_reason(spec)}",
            chunking_reason(spec),
        ],
        engine=spec.engine_name,
        chunkingStrategy=spec.chunking.value,
        pin=pool.pin,
        sticky=pool.sticky,
    )


def arch_term(spec: EndpointSpec) -> dict[str, Any]:
    return {"key": LABEL_ARCH, "operator": "In", "values": list(spec.architectures)}
