"""Training NExT-GPT's three alignment stages with Lightning (the ``train`` extra).

Where each part is:

=====================================  ====================================================
`NextGPTLightningModule` (``module``)  the stages as one LightningModule: build, step, checkpoints
`NextGPTDataModule` (``datamodule``)   the data files of a stage as loaders
``stages``                             what each stage trains; when the alignment loss applies
``features``                           the feature cache as the model's feature source
``targets``                            signal tokens in the answers; caption conditions to align to
``losses``                             LM cross-entropy, alignment distance, their sum
``diffusion``                          the optional noise-prediction loss through the decoders
``optim``                              AdamW groups and the learning-rate schedule
``checks``                             settings, long records, finite losses and weights
``cache``                              on-disk caches of features and caption conditions
``cli``, ``export``, ``interrupt``     ``nextgpt fit``, checkpoint -> folder, Ctrl-C checkpoints
=====================================  ====================================================

``from nextgpt.training import NextGPTLightningModule, NextGPTDataModule`` imports them (and
Lightning) on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nextgpt.extras import require_extra

require_extra("train", "nextgpt's training (nextgpt fit, cache, export)")

_EXPORTS = {
    "NextGPTLightningModule": "nextgpt.training.module",
    "NextGPTDataModule": "nextgpt.training.datamodule",
    "NextGPTCLI": "nextgpt.training.cli",
}
__all__ = ["NextGPTCLI", "NextGPTDataModule", "NextGPTLightningModule"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from nextgpt.training.cli import NextGPTCLI
    from nextgpt.training.datamodule import NextGPTDataModule
    from nextgpt.training.module import NextGPTLightningModule
