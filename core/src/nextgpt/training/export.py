"""Turning a training checkpoint into a folder `NextGPTModel.from_pretrained` loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nextgpt.errors import ConfigError
from nextgpt.training.module import CHECKPOINT_KEY, NextGPTLightningModule


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint: {exc}") from exc
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise ConfigError(f"{path}: not a NextGPTLightningModule checkpoint")
    return checkpoint


def module_from_checkpoint(path: str | Path, model: str | None = None) -> NextGPTLightningModule:
    """Rebuild the LightningModule a checkpoint was written by and load its trained weights.

    ``model`` replaces the checkpoint's model source (a preset or folder that has moved)."""
    checkpoint = load_checkpoint(path)
    hparams = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
    if model is not None:
        hparams["model"] = model
    module = NextGPTLightningModule(**hparams)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    return module


def export_checkpoint(path: str | Path, directory: str | Path, model: str | None = None) -> Path:
    """Write ``directory`` (config.json + model.safetensors) from a training checkpoint."""
    module = module_from_checkpoint(path, model)
    return module.model.save_pretrained(directory)
