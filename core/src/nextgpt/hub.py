"""Hugging Face hub look-ups that fail fast when the hub cannot be reached, and the one rule
that tells a local path from a hub repository id (`looks_like_path`).

Without a network, ``transformers`` retries each file five times with back-off (about 25 s a
file, a minute for a model) before it says so. `prepare_hub_source` decides first, in at most a
few seconds: with ``HF_HUB_OFFLINE`` set or the hub unreachable, a repository already in the
local cache is read from there (``local_files_only``) and any other is an error at once, naming
the source and the fix.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from nextgpt.errors import ConfigError

CONNECT_TIMEOUT_S = 3.0
"""How long the reachability probe waits for a TCP connection to the hub."""


def looks_like_path(source: str) -> bool:
    """Whether ``source`` names a local file or folder rather than a hub repository id.

    A hub id is ``name`` or ``org/name``. Anything that starts with ``/``, ``.`` or ``~``, holds a
    backslash or more than one ``/``, exists on disk, or whose first part is a local folder (a
    path to something missing inside it) is a path. The LLM, the decoders and model folders all
    decide with this rule."""
    text = str(source)
    if text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1:
        return True
    if Path(text).expanduser().exists():
        return True
    return "/" in text and Path(text.split("/")[0]).expanduser().is_dir()


def is_bare_name(source: str) -> bool:
    """Whether ``source`` is a plain name (``tiny``, ``gpt2``, a named model): no path separator,
    not starting with ``.`` or ``~``."""
    text = str(source)
    return bool(text) and "/" not in text and "\\" not in text and not text.startswith((".", "~"))


def hub_endpoint() -> str:
    """The hub's address (``HF_ENDPOINT``, default https://huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_mode() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for the local cache only."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@functools.lru_cache(maxsize=8)
def _reachable(endpoint: str) -> bool:
    url = urlparse(endpoint)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def hub_reachable() -> bool:
    """Whether a TCP connection to the hub opens within `CONNECT_TIMEOUT_S` (asked once per
    endpoint and process)."""
    return _reachable(hub_endpoint())


def in_local_cache(repo_id: str, filename: str) -> bool:
    """Whether ``filename`` of hub repository ``repo_id`` is in the local hub cache."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return isinstance(found, str)


def prepare_hub_source(repo_id: str, filename: str, what: str) -> bool:
    """Check that hub repository ``repo_id`` can be read; returns whether to read it from the
    local cache only (pass it on as ``local_files_only``).

    Args:
        repo_id: the hub id, e.g. ``stable-diffusion-v1-5/stable-diffusion-v1-5``.
        filename: a file every copy of the repository has (``config.json``, ``model_index.json``),
            looked up in the local cache.
        what: how the error names the setting, e.g. ``llm.source``.

    Raises:
        ConfigError: offline (or the hub unreachable) and the repository is not cached.
    """
    offline = offline_mode()
    if not offline and hub_reachable():
        return False
    if in_local_cache(repo_id, filename):
        return True
    reason = "HF_HUB_OFFLINE is set" if offline else f"the hub ({hub_endpoint()}) cannot be reached"
    raise ConfigError(
        f"{what}: {repo_id!r} is not a local folder and not in the local hub cache, and {reason}. "
        "Give a local folder instead: download it where you are online "
        f"(`hf download {repo_id} --local-dir DIR`) and give DIR."
    )
