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


def process_umask() -> int:
    """This process's umask (read from ``/proc`` where possible, as setting it to read it back
    would race with threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_default_mode(*paths: str | Path) -> None:
    """Give files the permissions a plain ``open(path, "w")`` would (``0o666`` less the umask).

    safetensors writes through a private temporary file and renames it, so its files come out
    ``0600`` whatever the umask; model folders are meant to be shared like any other output.
    Folders are walked: every file under them is set.
    """
    mode = 0o666 & ~process_umask()
    for path in map(Path, paths):
        files = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()] if path.is_dir() else [path]
        for file in files:
            os.chmod(file, mode)
