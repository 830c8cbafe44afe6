"""The model folder: what `NextGPTModel.save_pretrained` writes and `from_pretrained` reads.

``config.json`` holds the whole `NextGPTConfig` (which names the frozen LLM, encoders and
decoders by source), the signal tokens and their ids, and each component's licence;
``model.safetensors`` holds only the trained tensors (projectors, signal-token rows, LoRA). A
folder is found by path, by name under `nextgpt.paths.models_dir`, or downloaded from the hub.

Portability: a frozen component that lies inside the folder (a merged LLM in ``llm/``, a
decoder pipeline in ``decoders/``...) is recorded relative to it, as ``./llm``, and read back
relative to wherever the folder is now, so a folder can be moved, copied or uploaded whole.
Other sources are recorded as given (hub ids, names such as ``tiny``, absolute paths); a path
given relative to the working folder (``./x``) is made absolute, as it means nothing elsewhere.

Integrity: ``config.json`` records ``format_version`` (`FORMAT_VERSION`; a folder written by a
newer nextgpt is refused with a message saying so) and the SHA-256 of ``model.safetensors``
(``weights_sha256``), checked on every load: a truncated, corrupt or changed weights file is an
error naming it. Both files are written through a temporary file and renamed, weights first, so
an interrupted save never leaves a folder that loads with the wrong weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nextgpt.config import NextGPTConfig, validate_model
from nextgpt.errors import ConfigError
from nextgpt.files import describe_os_error, replace_atomically
from nextgpt.hub import is_bare_name, looks_like_path, prepare_hub_source
from nextgpt.paths import apply_default_mode

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 3
"""3: a source that starts with ``./`` is relative to the folder (`IN_FOLDER`). 2: every source
is as written; ``weights_sha256`` is recorded and checked. 1: as 2 without the checksum. All
three are read."""
READABLE_VERSIONS = (1, 2, 3)
IN_FOLDER = "./"
"""How a format-3 folder marks a frozen component's source that lies inside it."""


@dataclass
class ModelFolder:
    """A model folder, read and checked (the weights file exists; the config validates)."""

    directory: Path
    config: NextGPTConfig
    signal_token_ids: dict[str, list[int]]
    weights_sha256: str | None = None
    """The recorded checksum of the weights (None in format-1 folders)."""
    signal_tokens: dict[str, list[str]] = field(default_factory=dict)
    """The signal tokens of each modality, as written (they rebuild the vocabulary of a
    modality whose plugin is not installed)."""

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG_NAME

    @property
    def weights_path(self) -> Path:
        return self.directory / WEIGHTS_NAME

    def load_weights(self) -> dict[str, torch.Tensor]:
        """The trained tensors, after checking the weights file against its recorded checksum.
        Raises `ConfigError` naming the file when it is unreadable, corrupt or changed."""
        path = self.weights_path
        try:
            if self.weights_sha256 is not None and file_sha256(path) != self.weights_sha256:
                raise ConfigError(
                    f"{path}: the weights do not match the checksum recorded in {self.config_path} "
                    "(the file is truncated, corrupt or was changed after saving)"
                )
            return load_file(str(path))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the weights: {describe_os_error(exc)}") from exc
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"{path}: not a readable safetensors file (truncated or corrupt): {exc}") from exc


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_model_folder(name_or_path: str | Path) -> ModelFolder:
    """Find a model folder (`resolve_model_folder`) and read its ``config.json``; errors name
    the file and what is wrong with it."""
    directory = resolve_model_folder(name_or_path)
    config_path = directory / CONFIG_NAME
    try:
        meta = json.loads(config_path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read the model config: {describe_os_error(exc)}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{config_path}: not a JSON model config: {exc}") from exc
    if not isinstance(meta, dict):
        raise ConfigError(f"{config_path}: expected a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version", 1)
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        raise ConfigError(
            f"{config_path}: format_version {version!r} "
            + (
                f"is newer than this nextgpt reads ({', '.join(map(str, READABLE_VERSIONS))}); upgrade nextgpt"
                if newer
                else f"is not one nextgpt knows (it reads {', '.join(map(str, READABLE_VERSIONS))})"
            )
        )
    checksum = meta.get("weights_sha256")
    if version >= 2 and not isinstance(checksum, str):
        raise ConfigError(f"{config_path}: format_version {version} needs 'weights_sha256', the weights' checksum")
    config = validate_model(NextGPTConfig, meta.get("config"), where=f"{config_path}: config")
    if version >= 3:
        config = map_sources(config, lambda source: source_in_folder(source, directory))
    folder = ModelFolder(
        directory,
        config,
        meta.get("signal_token_ids", {}),
        checksum if version >= 2 else None,
        meta.get("signal_tokens", {}),
    )
    if not folder.weights_path.is_file():
        raise ConfigError(f"{folder.weights_path}: missing weights file")
    return folder


def write_pretrained(
    directory: str | Path,
    config: NextGPTConfig,
    signal_tokens: dict[str, list[str]],
    signal_ids: dict[str, list[int]],
    state: dict[str, torch.Tensor],
    licences: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write a model folder: ``config.json`` (the configuration, which names the frozen
    components, the signal-token ids and the weights' checksum) and ``model.safetensors`` (the
    trained tensors). Each file is replaced atomically, the weights first."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / WEIGHTS_NAME
    tmp = weights_path.with_name(f".{WEIGHTS_NAME}.{os.getpid()}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
        checksum = file_sha256(tmp)
        os.replace(tmp, weights_path)
        apply_default_mode(weights_path)  # safetensors writes 0600
    finally:
        tmp.unlink(missing_ok=True)
    config = map_sources(config, lambda source: portable_source(source, directory))
    modalities = config.modalities
    meta = {
        "format_version": FORMAT_VERSION,
        "weights_sha256": checksum,
        "architecture": "NextGPTModel",
        "config": config.model_dump(mode="json"),
        "signal_tokens": signal_tokens,
        "signal_token_ids": signal_ids,
        "frozen": {
            "llm": config.llm.source,
            "encoders": {n: raw.get("encoder") for n, raw in modalities.items()},
            "decoders": {n: raw.get("decoder") for n, raw in modalities.items()},
        },
        "licences": licences or {},
    }
    replace_atomically(directory / CONFIG_NAME, json.dumps(meta, indent=2, default=str).encode("utf-8"))
    return directory


def map_sources(config: NextGPTConfig, change: Callable[[str], str]) -> NextGPTConfig:
    """``config`` with ``change`` applied to the source of every frozen component: the LLM and
    each modality's encoder and decoder."""
    modalities = {}
    for name, raw in config.modalities.items():
        raw = dict(raw)
        for part in ("encoder", "decoder"):
            settings = raw.get(part)
            if isinstance(settings, dict) and isinstance(settings.get("source"), str):
                raw[part] = {**settings, "source": change(settings["source"])}
        modalities[name] = raw
    llm = config.llm.model_copy(update={"source": change(config.llm.source)})
    return config.model_copy(update={"llm": llm, "modalities": modalities})


def portable_source(source: str, directory: Path) -> str:
    """How a folder in ``directory`` records ``source``: ``./<path>`` when it is a path inside the
    folder; absolute when it is a path elsewhere given relative to the working folder (``./x``,
    ``../x``); otherwise as given (hub ids, bare names such as ``tiny``, absolute and ``~`` paths)."""
    if is_bare_name(source) or not looks_like_path(source):
        return source
    path = Path(source).expanduser()
    try:
        inside = path.resolve().relative_to(Path(directory).resolve())
    except ValueError:
        return str(path.absolute()) if source.startswith(".") else source
    return IN_FOLDER + inside.as_posix() if inside.parts else IN_FOLDER


def source_in_folder(source: str, directory: Path) -> str:
    """A recorded source as a path to use: ``./<path>`` (`IN_FOLDER`) is relative to the folder in
    ``directory``, wherever it is now (its real location: a folder reached through a link, such
    as a named model, is named by where it lies); anything else is unchanged."""
    if not source.startswith(IN_FOLDER):
        return source
    return str(Path(directory).resolve() / source.removeprefix(IN_FOLDER))


def resolve_model_folder(name_or_path: str | Path) -> Path:
    """A model folder: ``name_or_path`` itself, a named model under `models_dir`, or a hub
    repository downloaded to the local cache. Only a name shaped like a hub id (``org/name``)
    whose first part is not a local folder goes to the hub, and it fails fast offline
    (`nextgpt.hub.prepare_hub_source`)."""
    from nextgpt.paths import models_dir

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    text = str(name_or_path)
    if is_bare_name(text) and (models_dir() / text).is_dir():
        return models_dir() / text
    if path.exists():
        raise ConfigError(f"{text}: not a model folder (a folder written by save_pretrained), but a file")
    if looks_like_path(text) or text.count("/") != 1:  # a model folder on the hub is always org/name
        raise ConfigError(_not_found_message(text, models_dir()))
    from huggingface_hub import snapshot_download

    local_only = prepare_hub_source(text, CONFIG_NAME, "model")
    try:
        return Path(snapshot_download(text, local_files_only=local_only))
    except Exception as exc:
        raise ConfigError(
            f"{text}: no such local folder, and it cannot be downloaded from the hub ({type(exc).__name__}: {exc})"
        ) from exc


def _not_found_message(text: str, named_dir: Path) -> str:
    """What a model name that is no folder, named model or preset could have meant."""
    from nextgpt.presets import PRESETS
    from nextgpt.suggest import hint, listing

    named = sorted(p.name for p in named_dir.iterdir() if p.is_dir()) if named_dir.is_dir() else []
    if text and not is_bare_name(text):
        return f"{text}: no such model folder (expected a folder written by save_pretrained)"
    return (
        f"unknown model {text!r}{hint(text, [*PRESETS, *named])}: not a preset ({listing(PRESETS)}), "
        f"a folder, or a named model in {named_dir} ({listing(named)})"
    )
