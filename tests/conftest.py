"""Shared fixtures. Tiny components are materialised once per test session in a temporary
NEXTGPT_HOME, so tests never touch the user's cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # helper modules such as media_fixtures

_SESSION_HOME: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION_HOME
    base = Path(os.environ.get("NEXTGPT_TEST_HOME", config.rootpath / ".pytest_cache" / "nextgpt_home"))
    base.mkdir(parents=True, exist_ok=True)
    _SESSION_HOME = base
    os.environ["NEXTGPT_HOME"] = str(base)
    os.environ.pop("NEXTGPT_PLUGINS", None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def nextgpt_home() -> Path:
    assert _SESSION_HOME is not None
    return _SESSION_HOME


@pytest.fixture(scope="session")
def registry():
    """The registry of the three in-repo modality plugins."""
    from nextgpt.plugins import load_plugins

    return load_plugins(allow=["image", "audio", "video"])


@pytest.fixture(scope="session")
def tiny_model(registry):
    """The tiny preset over image, audio and video (built once per session; do not mutate)."""
    from nextgpt.model import NextGPTModel

    return NextGPTModel.from_pretrained("tiny", registry=registry)
