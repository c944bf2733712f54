"""Shared fixtures: cached models and speech (built by the project's own scripts), real servers; tier checks.

The helpers behind them live in tests/helpers.py (`from helpers import ...`); the names below are re-exported so
that `from conftest import ROOT, free_port` keeps working.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import ROOT, ServerProcess, free_port, free_port_block, script_output

__all__ = ["ROOT", "ServerProcess", "free_port", "free_port_block", "script_output"]

# Every test carries a tier (pyproject.toml lists what each needs): `pytest -m unit` must run with nothing
# downloaded, no server and no network, so a test needing more is not unit. Other tiers combine (a chart test that
# needs a real server is cluster and engine).
TIERS = {"unit", "weights", "vllm", "chart", "server", "engine", "cluster", "image"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tiers = {m.name for m in item.iter_markers()} & TIERS
        if not tiers or ("unit" in tiers and len(tiers) > 1):
            raise pytest.UsageError(f"{item.nodeid} has tiers {sorted(tiers)}: unit alone, or some of {sorted(TIERS)}")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return Path(script_output("fixtures.sh")[-1])


@pytest.fixture(scope="session")
def model_tiny_en() -> Path:
    return Path(script_output("models.sh", "tiny.en")[-1])


@pytest.fixture(scope="session")
def model_base() -> Path:
    return Path(script_output("models.sh", "base")[-1])


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServerProcess]]:
    """start(model, **env): `python -m whisper_inference` on `model`, ready; stopped at the end of the session."""
    started: list[ServerProcess] = []

    def start(model: Path, **env: str) -> ServerProcess:
        log = tmp_path_factory.mktemp("server") / "server.log"
        server = ServerProcess({"MODEL_ID": str(model), **env}, log)
        started.append(server)
        return server.wait_ready()

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def tiny_server(start_server: Callable[..., ServerProcess], model_tiny_en: Path) -> ServerProcess:
    return start_server(model_tiny_en, SERVED_MODEL_NAME="whisper-tiny.en", MAX_AUDIO_SECONDS="120")


@pytest.fixture(scope="session")
def base_server(start_server: Callable[..., ServerProcess], model_base: Path) -> ServerProcess:
    return start_server(model_base, SERVED_MODEL_NAME="whisper-base")
