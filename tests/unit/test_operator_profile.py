"""Pure profile / candidate-node / catalog logic."""

from __future__ import annotations

import pytest

from whisper_operator.errors import SpecError
from whisper_operator.gpu_catalog import compute_capability_for_product
from whisper_operator.nodes import candidate_nodes
from whisper_operator.profile import compute_profile
from whisper_operator.spec import parse_spec

pytestmark = pytest.mark.unit
G = "nvidia.com/gpu"


def node(name, labels=None, gpus=1, taints=None, unschedulable=False):
    return {
        "metadata": {"name": name, "uid": name + "-uid", "labels": labels or {}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {"allocatable": {G: str(gpus)}},
    }


T4 = node("t4", {"pool": "t4", f"{G}.product": "Tesla-T4", f"{G}.compute.major": "7", f"{G}.compute.minor": "5"})
H100 = node(
    "h100",
    {"pool": "h100", f"{G}.product": "NVIDIA-H100-80GB-HBM3", f"{G}.compute.major": "9", f"{G}.compute.minor": "0"},
    gpus=4,
)
L4 = node("l4", {"pool": "l4", f"{G}.product": "NVIDIA-L4"})
A100 = node("a100", {"pool": "a100", f"{G}.product": "NVIDIA-A100-SXM4-80GB"})
BARE = node("bare", {"pool": "bare"})
CPU = node("cpu", {"pool": "t4"}, gpus=0)


def profile(spec, nodes, probed=None, policy="Pin"):
    typed = parse_spec({"model": "m", **spec})
    return compute_profile(typed, candidate_nodes(typed, nodes, probed), policy)


def exact(major, minor):
    return {
        "matchExpressions": [
            {"key": f"{G}.compute.major", "operator": "In", "values": [major]},
            {"key": f"{G}.compute.minor", "operator": "In", "values": [minor]},
        ]
    }


@pytest.mark.parametrize(
    "product,cc",
    [
        ("Tesla-T4", (7, 5)),
        ("NVIDIA-A10G", (8, 6)),
        ("NVIDIA A10", (8, 6)),
        ("NVIDIA-A100-SXM4-80GB", (8, 0)),
        ("NVIDIA-L4", (8, 9)),
        ("NVIDIA-L40S", (8, 9)),
        ("NVIDIA H100 80GB HBM3", (9, 0)),
        ("NVIDIA-H200", (9, 0)),
        ("Tesla-V100-SXM2-16GB", (7, 0)),
        ("Some-Unknown-GPU", None),
        (None, None),
    ],
)
def test_catalog(product, cc):
    assert compute_capability_for_product(product) == cc


def test_turing_gets_half_fp16_triton():
    p = profile({"nodeSelector": {"pool": "t4"}}, [T4, H100, CPU])
    assert p.env() == {
        "ENGINE": "vllm",
        "DTYPE": "half",
        "VLLM_KV_CACHE_DTYPE": "fp16",
        "VLLM_ATTENTION_BACKEND": "TRITON_ATTN",
        "VLLM_USE_FLASHINFER": "0",
    }
    # pinned by the GFD labels even when the pool has one class: a bf16 pod never lands on a T4 that joins later
    assert p.computeCapability == "7.5" and p.placement == "Pinned" and p.pin == [exact("7", "5")]


def test_hopper_gets_bfloat16_flash_attn():
    p = profile({"nodeSelector": {"pool": "h100"}}, [T4, H100])
    assert (p.dtype, p.kvCacheDtype, p.attentionBackend) == ("bfloat16", "auto", "FLASH_ATTN")


def test_product_label_only_maps_and_probe_answers():
    assert profile({"nodeSelector": {"pool": "l4"}}, [L4]).computeCapability == "8.9"
    spec = {"nodeSelector": {"pool": "bare"}}
    with pytest.raises(SpecError) as err:
        profile(spec, [BARE])
    assert err.value.reason == "NoCandidateNodes"
    p = profile(spec, [BARE], probed={"bare-uid": {"major": 8, "minor": 0, "product": "NVIDIA A100"}})
    assert p.dtype == "bfloat16" and p.gpuProduct == "NVIDIA A100"


def test_bfloat16_on_turing_is_a_spec_error():
    with pytest.raises(SpecError) as err:
        profile({"dtype": "bfloat16", "nodeSelector": {"pool": "t4"}}, [T4])
    assert err.value.reason == "UnsupportedDtype" and "8.0" in err.value.message


def test_fp8_kv_needs_ada_and_uses_triton_below_hopper():
    with pytest.raises(SpecError) as err:
        profile({"kvCacheDtype": "fp8", "nodeSelector": {"pool": "a100"}}, [A100])
    assert err.value.reason == "UnsupportedKVCacheDtype"
    p = profile({"kvCacheDtype": "fp8", "nodeSelector": {"pool": "l4"}}, [L4])
    assert (p.kvCacheDtype, p.attentionBackend) == ("fp8", "TRITON_ATTN")
    assert profile({"kvCacheDtype": "fp8"}, [H100]).attentionBackend == "FLASH_ATTN"


def test_explicit_values_win_or_fail():
    p = profile({"dtype": "float32", "attentionBackend": "TRITON_ATTN", "kvCacheDtype": "fp32"}, [H100])
    assert (p.dtype, p.attentionBackend, p.kvCacheDtype) == ("float32", "TRITON_ATTN", "fp32")
    with pytest.raises(SpecError) as err:
        profile({"attentionBackend": "FLASH_ATTN"}, [T4])
    assert err.value.reason == "UnsupportedAttentionBackend"
    with pytest.raises(SpecError):
        profile({"attentionBackend": "FLASHINFER"}, [H100])


def test_mixed_pool_pin_and_safest():
    p = profile({}, [T4, H100])
    assert p.placement == "Pinned" and p.nodes == ["h100"] and p.dtype == "bfloat16"
    assert p.pin == [exact("9", "0")]
    s = profile({"gpu": {"mixedPoolPolicy": "SafestCommon"}}, [T4, H100])
    assert s.placement == "SafestCommon" and s.dtype == "half" and s.nodes == ["h100", "t4"]
    # every class at or above 7.5, by the GFD labels
    assert s.pin == [
        {"matchExpressions": [{"key": f"{G}.compute.major", "operator": "Gt", "values": ["7"]}]},
        {
            "matchExpressions": [
                {"key": f"{G}.compute.major", "operator": "In", "values": ["7"]},
                {"key": f"{G}.compute.minor", "operator": "Gt", "values": ["4"]},
            ]
        },
    ]
    # an explicit bfloat16 narrows a mixed pool to the capable class instead of failing
    b = profile({"dtype": "bfloat16", "gpu": {"mixedPoolPolicy": "SafestCommon"}}, [T4, H100])
    assert b.nodes == ["h100"] and b.pin


def test_pins_by_product_or_name_when_compute_labels_are_missing():
    p = profile({}, [L4, A100])  # one GPU each, tie -> higher CC (8.9)
    assert p.pin == [{"matchExpressions": [{"key": f"{G}.product", "operator": "In", "values": ["NVIDIA-L4"]}]}]
    q = profile({}, [BARE, A100], probed={"bare-uid": {"major": 9, "minor": 0}})
    assert q.pin == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["bare"]}]}]


def test_gpu_product_and_min_cc_filters():
    assert profile({"gpu": {"product": "h100"}}, [T4, H100]).nodes == ["h100"]
    with pytest.raises(SpecError) as err:
        profile({"gpu": {"product": "X9000"}}, [T4, H100])
    assert err.value.reason == "ProductNotFound"
    with pytest.raises(SpecError) as err:
        profile({"gpu": {"minComputeCapability": "8.0"}}, [T4])
    assert err.value.reason == "BelowMinComputeCapability"


def test_candidates_respect_selector_affinity_taints_and_gpu_count():
    tainted = node(
        "tainted",
        {f"{G}.compute.major": "9", f"{G}.compute.minor": "0"},
        taints=[{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
    )
    cordoned = node("cordoned", {f"{G}.compute.major": "9"}, unschedulable=True)

    def names(spec):
        typed = parse_spec({"model": "m", **spec})
        return [n.name for n in candidate_nodes(typed, [T4, H100, CPU, tainted, cordoned])]

    assert names({}) == ["h100", "t4"]
    assert names({"gpu": {"count": 2}}) == ["h100"]
    assert names(
        {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]}
    ) == ["h100", "t4", "tainted"]
    assert "tainted" in names({"tolerations": [{"operator": "Exists"}]})
    aff = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": f"{G}.compute.major", "operator": "Gt", "values": ["8"]}]}
                ]
            }
        }
    }
    assert names({"affinity": aff}) == ["h100"]
    assert names({"nodeSelector": {"pool": "t4"}}) == ["t4"]


def test_admission_check_refuses_only_what_cannot_run():
    from whisper_operator.config import OperatorSettings
    from whisper_operator.webhook import check

    s = OperatorSettings(_env_file=None)
    assert "UnsupportedDtype" in check({"model": "m", "dtype": "bfloat16", "nodeSelector": {"pool": "t4"}}, [T4], s)
    assert check({"model": "m", "dtype": "bfloat16"}, [T4, H100], s) is None  # narrows to the H100
    assert check({"model": "m", "dtype": "bfloat16", "nodeSelector": {"pool": "bare"}}, [BARE], s) is None  # probe
    assert check({"model": "m", "nodeSelector": {"pool": "none"}}, [T4], s) is None  # nodes may come later
    # an enum the CRD would refuse (the webhook sees what the schema already checked; this is belt and braces)
    assert "attentionBackend" in check({"model": "m", "attentionBackend": "X"}, [], s)
