"""The CRD: structural, described everywhere, no CEL, and the samples validate against it."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from whisper_operator.profile import Profile

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds/whisperendpoints.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]


def _walk(schema, path="$"):
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def _jsonschema(schema):
    """OpenAPI v3 (CRD dialect) -> JSON Schema: drop the x-kubernetes-* and nullable keywords."""
    if isinstance(schema, dict):
        out = {k: _jsonschema(v) for k, v in schema.items() if not k.startswith("x-kubernetes") and k != "nullable"}
        if schema.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
        return out
    if isinstance(schema, list):
        return [_jsonschema(v) for v in schema]
    return schema


def test_every_field_is_described_and_no_cel():
    text = (ROOT / "crds/whisperendpoints.yaml").read_text()
    assert "x-kubernetes-validations" not in text  # CEL is not available on Kubernetes 1.20
    missing = [p for p, s in _walk(SCHEMA) if p != "$.metadata" and not s.get("description")]
    assert missing == []


def test_names_subresources_columns():
    assert CRD["spec"]["group"] == "kubewhisper.dev" and CRD["spec"]["scope"] == "Namespaced"
    assert CRD["spec"]["names"]["plural"] == "whisperendpoints" and CRD["spec"]["names"]["shortNames"] == ["we"]
    assert VERSION["name"] == "v1alpha1" and "status" in VERSION["subresources"]
    assert VERSION["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    cols = [c["name"] for c in VERSION["additionalPrinterColumns"]]
    assert cols == ["Model", "Ready", "DType", "Accelerator", "URL", "Age"]


@pytest.mark.parametrize("sample", sorted((ROOT / "operator/examples").glob("endpoint-*.yaml")), ids=lambda p: p.name)
def test_samples_validate(sample):
    jsonschema.validate(yaml.safe_load(sample.read_text()), _jsonschema(SCHEMA))


@pytest.mark.parametrize(
    "spec",
    [
        {"replicas": 1},
        {"model": "m", "replicas": -1},
        {"model": "m", "dtype": "fp64"},
        {"model": "m", "attentionBackend": "FLASHINFER"},
        {"model": "m", "gpu": {"minComputeCapability": "eight"}},
        {"model": "m", "service": {"port": 70000}},
        {"model": "m", "windowSeconds": 31},
    ],
)
def test_bad_specs_refused_by_schema(spec):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": spec}, _jsonschema(SCHEMA))


def test_status_profile_schema_holds_every_profile_field():
    """The API server prunes status fields its schema does not list: every key of status.profile must be there."""
    written = set(Profile("none", "none", "float32", "auto", "none", False, "CPU", []).status())
    listed = set(SCHEMA["properties"]["status"]["properties"]["profile"]["properties"])
    assert written == listed
