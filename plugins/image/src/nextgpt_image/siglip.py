"""SigLIP image encoder (Apache-2.0): an alternative to ImageBind that permits commercial use.

Preprocessing is SigLIP's own ``SiglipImageProcessor``; features are the vision tower's patch
states ``[B, n_patches, hidden_size]``, so an input projector sizes itself from ``dim``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from nextgpt.interfaces import Encoder
from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

from nextgpt_image.licences import SIGLIP_LICENCE


def tiny_siglip_config() -> SiglipVisionConfig:
    """A randomly initialised SigLIP vision tower small enough for tests (offline)."""
    return SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )


class SiglipImageEncoder(Encoder):
    """A frozen SigLIP vision tower with its own image processor."""

    def __init__(self, model: SiglipVisionModel, processor: SiglipImageProcessor, identity: str) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.dim = int(model.config.hidden_size)
        self.licence = SIGLIP_LICENCE
        self.identity = identity

    @classmethod
    def from_source(cls, source: str) -> SiglipImageEncoder:
        """Build from ``"tiny"`` (random tiny config), a local folder or a hub id."""
        if source == "tiny":
            config = tiny_siglip_config()
            torch.manual_seed(0)
            processor = SiglipImageProcessor(size={"height": config.image_size, "width": config.image_size})
            return cls(SiglipVisionModel(config), processor, identity="siglip:tiny")
        model = SiglipVisionModel.from_pretrained(source)
        processor = SiglipImageProcessor.from_pretrained(source)
        return cls(model, processor, identity=f"siglip:{Path(source).name if Path(source).exists() else source}")

    def preprocess(self, media: Any) -> torch.Tensor:
        return self.processor(images=media, return_tensors="pt")["pixel_values"][0]

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=batch.to(self.model.dtype)).last_hidden_state
