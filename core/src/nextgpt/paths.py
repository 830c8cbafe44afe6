"""Where nextgpt keeps files it builds or downloads (``NEXTGPT_HOME``, default ~/.cache/nextgpt)."""

from __future__ import annotations

import os
from pathlib import Path


def nextgpt_home() -> Path:
    """The folder for cached tiny components, checkpoints and feature caches."""
    home = Path(os.environ.get("NEXTGPT_HOME", Path.home() / ".cache" / "nextgpt")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def models_dir() -> Path:
    """Where named local models live: ``from_pretrained("NAME")`` loads ``models_dir() / NAME``
    (e.g. the ``toy`` model that ``examples/toy_world/build_toy.py`` writes by default)."""
    return nextgpt_home() / "models"
