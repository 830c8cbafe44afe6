"""Turning a training checkpoint into a folder `NextGPTModel.from_pretrained` loads."""

from __future__ import annotations

from pathlib import Path
from pickle import UnpicklingError
from typing import Any

import torch

from nextgpt.errors import ConfigError
from nextgpt.files import check_new_folder, file_problem
from nextgpt.training.module import CHECKPOINT_KEY, NextGPTLightningModule


def check_checkpoint(path: str | Path) -> None:
    """Check that ``path`` is a training checkpoint `load_checkpoint` can read (it is memory-mapped:
    cheap even for a large file); raises `ConfigError` naming it otherwise."""
    load_checkpoint(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True``: tensors and plain data only, so a
    crafted file cannot run code; anything else in it is refused with an error naming it.

    ``path`` is a checkpoint file, or the folder DeepSpeed writes for one (``last.ckpt/``; see
    `nextgpt.training.strategies.deepspeed_checkpoint_file`)."""
    from nextgpt.training.strategies import deepspeed_checkpoint_file, from_deepspeed_layout

    path = Path(path)
    folder = path if path.is_dir() else None
    if folder is not None:
        path = deepspeed_checkpoint_file(folder)
    problem = file_problem(path)
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"{path}: refused: the checkpoint holds objects other than tensors and plain data, which could run "
            f"code when loaded (nextgpt loads checkpoints with weights_only=True): {first}"
        ) from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint (truncated or not a checkpoint): {exc}") from exc
    if folder is not None and isinstance(checkpoint, dict):
        checkpoint = from_deepspeed_layout(checkpoint)
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise ConfigError(f"{path}: not a NextGPTLightningModule checkpoint")
    return checkpoint


def module_from_checkpoint(path: str | Path, model: str | None = None) -> NextGPTLightningModule:
    """Rebuild the LightningModule a checkpoint was written by and load its trained weights.

    ``model`` replaces the checkpoint's model source (a preset or folder that has moved). An
    ``llm.quantization`` override of the run is left out (see below)."""
    checkpoint = load_checkpoint(path)
    hparams = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
    if model is not None:
        hparams["model"] = model
    # A QLoRA run's 4/8-bit LLM is how it was trained, not what it learned: the trained tensors
    # load onto the LLM in any dtype, so the export rebuilds it unquantised (on any machine);
    # `--set llm.quantization=4` quantises it again where the folder is used.
    hparams["overrides"] = [
        o for o in hparams.get("overrides") or [] if not str(o).replace(" ", "").startswith("llm.quantization")
    ]
    module = NextGPTLightningModule(**hparams)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    return module


def export_checkpoint(
    path: str | Path, directory: str | Path, model: str | None = None, overwrite: bool = False
) -> Path:
    """Write ``directory`` (config.json + model.safetensors) from a training checkpoint.

    ``directory`` must be new or empty unless ``overwrite``: an earlier export is never
    replaced unasked."""
    check_new_folder(Path(directory), overwrite)
    module = module_from_checkpoint(path, model)
    return module.model.save_pretrained(directory)
