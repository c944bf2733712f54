"""Repository-wide rules that no checker enforces: imports come from the install, downloads are verified."""

from __future__ import annotations

import re
import subprocess

import pytest

from helpers import ROOT

pytestmark = pytest.mark.unit


def tracked(*patterns: str) -> dict[str, str]:
    files = subprocess.run(
        ["git", "ls-files", "--", *patterns], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    return {f: (ROOT / f).read_text(errors="replace") for f in files if (ROOT / f).is_file()}


# spelled in two parts so that `git grep` for the variable finds nothing in the repository, this file included
HAND_SET = re.compile("PYTHON" + r"PATH|sys\.path\.(insert|append)\(")


def test_no_import_path_set_by_hand():
    """The project is installed editable in .venv (scripts/venv.sh): nothing sets the import path by hand."""
    offenders = [
        f"{name}:{n}"
        for name, text in tracked("*.py", "*.sh", "Makefile", "Dockerfile.*", ".ci/*", "*.toml", "*.md").items()
        for n, line in enumerate(text.splitlines(), 1)
        if HAND_SET.search(line)
    ]
    assert not offenders, offenders


def test_downloads_are_pinned_and_checked():
    """Every pip download requires hashes, every npm tarball is checked by sha256, no download's failure is hidden."""
    scripts = tracked("scripts/*.sh")
    for name, text in scripts.items():
        flat = text.replace("\\\n", " ")
        for line in flat.splitlines():
            if re.search(r"pip\b.*\bdownload\b", line):
                assert "--require-hashes" in line, f"{name}: pip download without --require-hashes: {line.strip()}"
            if re.search(r"\b(pip|npm|apt-get)\b.*\|\s*grep\b.*\|\|\s*true", line):
                raise AssertionError(f"{name}: a download whose failure is hidden: {line.strip()}")
        if "npm pack" in text:
            assert re.search(r"[0-9a-f]{64}\s+\S+\.tgz\" \| sha256sum -c", text), f"{name}: npm tarball not checked"


def test_no_ephemeral_ports_handed_on():
    """Ports for other processes come from tests/helpers.free_port(_block): outside the ephemeral range, reserved
    per test session. A port probed with bind(0) and closed is ephemeral: an outgoing connection may take it before
    the server binds it. (bind(0) on a socket that then listens itself is fine: nothing is handed on.)"""
    offenders = []
    for name, text in tracked("*.py", "*.sh").items():
        lines = text.splitlines()
        for n, line in enumerate(lines):
            if re.search(r"""bind\(\(["']127\.0\.0\.1["'],\s*0\)\)""", line):
                if not any(".listen(" in follow for follow in lines[n : n + 3]):
                    offenders.append(f"{name}:{n + 1}")
    assert not offenders, offenders
