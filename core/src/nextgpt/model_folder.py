"""The model folder: what `NextGPTModel.save_pretrained` writes and `from_pretrained` reads.

``config.json`` holds the whole `NextGPTConfig` (which names the frozen LLM, encoders and
decoders by source), the signal tokens and their ids, and each component's licence;
``model.safetensors`` holds only the trained tensors (projectors, signal-token rows, LoRA). A
folder is found by path, by name under `nextgpt.paths.models_dir`, or downloaded from the hub.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from nextgpt.config import NextGPTConfig, validate_model
from nextgpt.errors import ConfigError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


@dataclass
class ModelFolder:
    """A model folder, read and checked (the weights file exists; the config validates)."""

    directory: Path
    config: NextGPTConfig
    signal_token_ids: dict[str, list[int]]

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG_NAME

    @property
    def weights_path(self) -> Path:
        return self.directory / WEIGHTS_NAME


def read_model_folder(name_or_path: str | Path) -> ModelFolder:
    """Find a model folder (`resolve_model_folder`) and read its ``config.json``; errors name
    the file and what is wrong with it."""
    directory = resolve_model_folder(name_or_path)
    config_path = directory / CONFIG_NAME
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{config_path}: cannot read the model config: {exc}") from exc
    config = validate_model(NextGPTConfig, meta.get("config"), where=f"{config_path}: config")
    folder = ModelFolder(directory, config, meta.get("signal_token_ids", {}))
    if not folder.weights_path.exists():
        raise ConfigError(f"{folder.weights_path}: missing weights file")
    return folder


def write_pretrained(
    directory: str | Path,
    config: NextGPTConfig,
    signal_tokens: dict[str, list[str]],
    signal_ids: dict[str, list[int]],
    state: dict[str, torch.Tensor],
    licences: dict[str, str] | None = None,
) -> Path:
    """Write a model folder: ``config.json`` (the configuration, which names the frozen
    components, and the signal-token ids) and ``model.safetensors`` (the trained tensors)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    modalities = config.modalities
    meta = {
        "format_version": FORMAT_VERSION,
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
    (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2, default=str))
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    return directory


def resolve_model_folder(name_or_path: str | Path) -> Path:
    """A model folder: ``name_or_path`` itself, a named model under `models_dir`, or a hub
    repository downloaded to the local cache."""
    from nextgpt.paths import models_dir

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    text = str(name_or_path)
    if "/" not in text and text and not text.startswith((".", "~")) and (models_dir() / text).is_dir():
        return models_dir() / text
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise ConfigError(
            f"{name_or_path}: not a model folder, a preset, a named model in {models_dir()} or a hub repository id"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path)))
    except Exception as exc:
        raise ConfigError(f"{name_or_path}: cannot download from the hub ({type(exc).__name__}: {exc})") from exc
