"""spec.chunkingStrategy (pure): the default by pool, the pod's CHUNKING_STRATEGY, spec.env, validation, webhook."""

from __future__ import annotations

import pytest

from whisper_inference.audio.vad import chunking_options
from whisper_operator.chunking import check_chunking_strategy
from whisper_operator.config import OperatorSettings
from whisper_operator.cpu_profile import compute_cpu_profile
from whisper_operator.errors import SpecError
from whisper_operator.manifests import deployment
from whisper_operator.nodes import GpuNode
from whisper_operator.profile import compute_profile
from whisper_operator.spec import parse_spec
from whisper_operator.status import build_status
from whisper_operator.webhook import check

pytestmark = pytest.mark.unit
S = OperatorSettings(_env_file=None)
CPU_NODE = {"metadata": {"name": "cpu-1", "labels": {"kubernetes.io/arch": "amd64"}}, "spec": {}, "status": {}}
T4 = GpuNode("t4", {"kubernetes.io/arch": "amd64"}, 1, (7, 5), "Tesla-T4")
VAD = '{"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 800}'


def body(**spec):
    return {
        "apiVersion": "kubewhisper.dev/v1alpha1",
        "kind": "WhisperEndpoint",
        "metadata": {"name": "ep", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {"model": "/models/whisper-base", **spec},
    }


def rendered(b):
    """(the container's env entries, status.profile) as the reconciler builds them."""
    spec = parse_spec(b["spec"])
    profile = compute_cpu_profile(spec, [CPU_NODE]) if spec.on_cpu else compute_profile(spec, [T4])
    container = deployment(b, spec, profile, S)["spec"]["template"]["spec"]["containers"][0]
    status = build_status(b, spec, profile=profile, error=None, probe_pending=None, deploy=None, url="u", selector="s")
    return container["env"], status["profile"]


def chunking_env(env):
    return [e for e in env if e["name"] == "CHUNKING_STRATEGY"]


def test_default_by_pool_cpu_auto_gpu_none():
    env, profile = rendered(body(gpu={"count": 0}))
    assert chunking_env(env) == [{"name": "CHUNKING_STRATEGY", "value": "auto"}]
    assert profile["chunkingStrategy"] == "auto"
    assert any(r.startswith("chunkingStrategy auto: VAD windows on a CPU endpoint") for r in profile["reasons"])
    # GPU endpoints keep fixed windows, with the variable left out (their pod template does not change)
    env, profile = rendered(body())
    assert chunking_env(env) == []
    assert profile["chunkingStrategy"] == "none"
    assert "chunkingStrategy none: fixed windows on a GPU endpoint" in profile["reasons"]


@pytest.mark.parametrize("gpus", [0, 1])
def test_spec_value_wins_over_the_pool_default(gpus):
    env, profile = rendered(body(gpu={"count": gpus}, chunkingStrategy=VAD))
    assert chunking_env(env) == [{"name": "CHUNKING_STRATEGY", "value": VAD}]
    assert profile["chunkingStrategy"] == VAD and f"chunkingStrategy {VAD}: set in spec" in profile["reasons"]
    env, profile = rendered(body(gpu={"count": gpus}, chunkingStrategy=" none "))
    assert chunking_env(env) == [] and profile["chunkingStrategy"] == "none"
    env, _ = rendered(body(gpu={"count": gpus}, chunkingStrategy="auto"))
    assert chunking_env(env) == [{"name": "CHUNKING_STRATEGY", "value": "auto"}]


def test_spec_env_overrides_the_pool_default_once_and_says_so():
    env, profile = rendered(body(gpu={"count": 0}, env=[{"name": "CHUNKING_STRATEGY", "value": ""}]))
    assert chunking_env(env) == [{"name": "CHUNKING_STRATEGY", "value": ""}]  # the user's entry, not duplicated
    assert profile["chunkingStrategy"] == "none"
    assert "chunkingStrategy none: set by spec.env CHUNKING_STRATEGY" in profile["reasons"]
    ref = {"configMapKeyRef": {"name": "whisper", "key": "chunking"}}
    env, profile = rendered(body(env=[{"name": "CHUNKING_STRATEGY", "valueFrom": ref}]))
    assert chunking_env(env) == [{"name": "CHUNKING_STRATEGY", "valueFrom": ref}]
    assert profile["chunkingStrategy"] == "spec.env"


@pytest.mark.parametrize(
    "spec,problem",
    [
        ({"chunkingStrategy": "sometimes"}, 'spec.chunkingStrategy: must be "auto", "none" or a server_vad object'),
        ({"chunkingStrategy": "Auto"}, "spec.chunkingStrategy: must be"),
        ({"chunkingStrategy": '{"type": "server_vad"'}, "spec.chunkingStrategy: is not valid JSON"),
        ({"chunkingStrategy": '{"type": "client_vad"}'}, 'type must be "server_vad"'),
        ({"chunkingStrategy": '{"type": "server_vad", "threshold": 2}'}, "threshold must be between 0 and 1"),
        ({"chunkingStrategy": '{"type": "server_vad", "speed": 1}'}, "unknown field(s): speed"),
        ({"chunkingStrategy": "x" * 1025}, "spec.chunkingStrategy"),
        (
            {"chunkingStrategy": "auto", "env": [{"name": "CHUNKING_STRATEGY", "value": "auto"}]},
            "chunkingStrategy and an env entry CHUNKING_STRATEGY both set",
        ),
        ({"env": [{"name": "CHUNKING_STRATEGY", "value": "always"}]}, "env CHUNKING_STRATEGY must be"),
    ],
)
@pytest.mark.parametrize("gpus", [0, 1])
def test_invalid_values_are_refused_by_the_webhook_and_degrade_the_endpoint(spec, problem, gpus):
    raw = {"model": "m", "gpu": {"count": gpus}, **spec}
    refused = check(raw, [], S)
    assert refused is not None and refused.startswith("InvalidSpec: ") and problem in refused, refused
    with pytest.raises(SpecError) as e:  # where no webhook is installed: the reconciler's Degraded reason
        parse_spec(raw)
    assert e.value.reason == "InvalidSpec" and problem in e.value.message


def test_webhook_admits_valid_values():
    for value in ("auto", "none", VAD, '{"type": "server_vad"}'):
        assert check({"model": "m", "gpu": {"count": 0}, "chunkingStrategy": value}, [], S) is None


AGREEMENT = [
    "auto",
    "none",
    " auto ",
    "",
    "never",
    "{",
    "[]",
    '"auto"',
    "{}",
    '{"type": "server_vad"}',
    '{"type": "server_vad", "threshold": "0.3", "prefix_padding_ms": "100"}',
    '{"type": "server_vad", "threshold": true}',
    '{"type": "server_vad", "threshold": NaN}',
    '{"type": "server_vad", "threshold": -0.1}',
    '{"type": "server_vad", "prefix_padding_ms": 10001}',
    '{"type": "server_vad", "prefix_padding_ms": 10000, "silence_duration_ms": 0}',
    '{"type": "server_vad", "silence_duration_ms": 1e400}',
    '{"type": "server_vad", "silence_duration_ms": 1.5}',
    '{"type": "server_vad", "silence_duration_ms": "1.5"}',
    '{"type": "server_vad", "silence_duration_ms": null}',
    '{"type": "server_vad", "silence_duration_ms": [1]}',
    '{"type": "server_vad", "x": 1}',
]


@pytest.mark.parametrize("value", AGREEMENT)
def test_operator_and_server_accept_the_same_values(value):
    """The operator cannot import the server's parser (its image has no numpy), so it repeats the rules: both must
    accept and refuse the same CHUNKING_STRATEGY values ("" is the server's unset, which the field never holds)."""

    def accepts(parse):
        try:
            parse(value)
        except ValueError:
            return False
        return True

    server = accepts(chunking_options)
    operator = accepts(check_chunking_strategy) if value.strip() else True
    assert operator == server, (value, operator, server)
