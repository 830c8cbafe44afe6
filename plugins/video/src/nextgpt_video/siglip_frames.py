"""SigLIP over sampled frames (Apache-2.0): a video encoder that permits commercial use.

``num_frames`` frames (default 8) are taken evenly spaced over the clip (a shorter clip repeats
its frames); each goes through SigLIP's own ``SiglipImageProcessor`` and its vision tower, whose
pooled output (the attention-pooling head) is that frame's feature. The clip's features are one
token per sampled frame, ``[B, num_frames, hidden_size]`` (1152 wide for
``google/siglip-so400m-patch14-384``), in time order: the pooling is per frame, and the order of
the frames is left to the input projector and the LLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from nextgpt.interfaces import Encoder

from nextgpt_video.licences import SIGLIP_LICENCE
from nextgpt_video.media import VideoClip


def tiny_siglip_parts() -> tuple[Any, Any]:
    """A randomly initialised SigLIP vision tower and its processor, small enough for tests."""
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SiglipVisionModel(config)
    return model, SiglipImageProcessor(size={"height": 32, "width": 32})


def frame_indices(total: int, count: int) -> np.ndarray:
    """``count`` frame indices spread evenly over ``total`` frames (centres of equal segments)."""
    return np.minimum(((np.arange(count) + 0.5) * total / count).astype(int), total - 1)


class SiglipFramesEncoder(Encoder):
    """A frozen SigLIP vision tower applied to ``num_frames`` sampled frames of a clip."""

    def __init__(self, model: Any, processor: Any, identity: str, num_frames: int = 8) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"encoder {identity}: num_frames must be at least 1, got {num_frames}")
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.num_frames = int(num_frames)
        self.dim = int(model.config.hidden_size)
        self.licence = SIGLIP_LICENCE
        self.identity = f"{identity}:frames{self.num_frames}"

    @classmethod
    def from_source(cls, source: str, num_frames: int = 8) -> SiglipFramesEncoder:
        """Build from ``"tiny"`` (random tiny weights), a local folder written by
        ``save_pretrained`` (model and processor), or a hub id."""
        if source == "tiny":
            model, processor = tiny_siglip_parts()
            return cls(model, processor, "siglip:tiny", num_frames)
        from transformers import SiglipImageProcessor, SiglipVisionModel

        model = SiglipVisionModel.from_pretrained(source)
        processor = SiglipImageProcessor.from_pretrained(source)
        local = Path(source).expanduser()
        return cls(model, processor, f"siglip:{local.resolve() if local.exists() else source}", num_frames)

    def preprocess(self, media: VideoClip) -> torch.Tensor:
        """``[num_frames, 3, H, W]`` pixel values of the sampled frames."""
        frames = np.asarray(media.frames)
        chosen = [frames[i] for i in frame_indices(len(frames), self.num_frames)]
        return self.processor(images=chosen, return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        clips, frames = batch.shape[:2]
        pixels = batch.flatten(0, 1).to(self.model.dtype)
        pooled = self.model(pixel_values=pixels).pooler_output
        return pooled.view(clips, frames, -1)
