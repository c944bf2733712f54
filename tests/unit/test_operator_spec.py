"""The typed spec (whisper_operator.spec) and the CRD schema agree: same fields, same defaults, same enums."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from whisper_operator.errors import SpecError
from whisper_operator.spec import EndpointSpec, parse_spec

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((ROOT / "crds/whisperendpoints.yaml").read_text())["spec"]["versions"][0]["schema"][
    "openAPIV3Schema"
]["properties"]["spec"]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _literals(annotation: Any) -> list[str] | None:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    for arg in typing.get_args(annotation):
        found = _literals(arg)
        if found:
            return found
    return None


def _pairs(model: type[BaseModel], schema: dict[str, Any], path: str = "spec"):
    props = schema.get("properties") or {}
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    assert sorted(fields) == sorted(props), f"{path}: model fields and CRD properties differ"
    for alias, f in fields.items():
        yield f"{path}.{alias}", f, props[alias]
        sub = _model_of(f.annotation)
        if sub is not None:
            yield from _pairs(sub, props[alias], f"{path}.{alias}")


PAIRS = list(_pairs(EndpointSpec, SCHEMA))


@pytest.mark.parametrize("path,field,prop", PAIRS, ids=[p[0] for p in PAIRS])
def test_defaults_and_enums_match_the_crd(path, field, prop):
    literals = _literals(field.annotation)
    enum = prop.get("enum") or (prop.get("items") or {}).get("enum")
    if literals is not None:
        assert literals == enum, path
    elif prop.get("enum"):
        pytest.fail(f"{path}: the CRD has an enum, the model does not")
    if "default" in prop:
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump(by_alias=True, exclude_none=True)
            # the API server fills nested defaults under a defaulted {}: compare what it would store
            expected = type(field.get_default(call_default_factory=True)).model_validate(prop["default"])
            assert default == expected.model_dump(by_alias=True, exclude_none=True), path
        else:
            assert default == prop["default"], path
    else:
        assert not field.is_required() or path in (
            "spec.model",
            "spec.apiKeySecretRef.name",
            "spec.modelCache.claimName",
        )
        if not field.is_required():
            default = field.get_default(call_default_factory=True)
            assert default in (None, [], {}) or isinstance(default, BaseModel), (
                f"{path}: default {default!r} not in the CRD"
            )


def test_model_defaults_fill_a_minimal_spec():
    spec = parse_spec({"model": "openai/whisper-tiny"})
    assert spec.replicas == 1 and spec.gpu.count == 1 and spec.dtype == "auto"
    assert spec.rollout.max_surge == 0 and spec.rollout.max_unavailable == 1
    assert spec.architectures == ["amd64"] and spec.service.port == 80 and spec.served_name == "openai/whisper-tiny"


def test_a_spec_the_model_refuses_is_a_spec_error():
    with pytest.raises(SpecError) as e:
        parse_spec({"model": "m", "dtype": "fp64"})
    assert e.value.reason == "InvalidSpec" and "dtype" in e.value.message
