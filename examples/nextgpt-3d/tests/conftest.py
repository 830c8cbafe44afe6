"""Fixtures of the nextgpt-3d tests. Like the workspace's tests/conftest.py, tiny components are
materialised in a test-only NEXTGPT_HOME (the same folder, so both suites share it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    base = Path(os.environ.get("NEXTGPT_TEST_HOME", config.rootpath / ".pytest_cache" / "nextgpt_home"))
    base.mkdir(parents=True, exist_ok=True)
    os.environ["NEXTGPT_HOME"] = str(base)
    os.environ.pop("NEXTGPT_PLUGINS", None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_decoder():
    """The tiny Shap-E decoder (loaded once per session; do not mutate)."""
    from nextgpt_3d.decoder import ShapEDecoder

    return ShapEDecoder("tiny")


@pytest.fixture(scope="session")
def tiny_encoder():
    from nextgpt_3d.encoder import PointNetEncoder

    return PointNetEncoder.from_source("tiny")
