"""`T5VideoDecoder`: what the T5-conditioned video transformers (CogVideoX, Wan) share.

Both pipelines take one condition, ``prompt_embeds [B, Q, d]`` (a T5 encoder's last hidden
state of the padded caption, no mask), encode the unconditional branch as the empty prompt, take
``num_frames``/``height``/``width`` and ``max_sequence_length``, and return float frames in
[0, 1]. Subclasses add their pipeline, tiny build, condition shape and denoising loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from nextgpt.conditions import Condition
from nextgpt.config import DecodeOptions
from nextgpt.decoders import DiffusersDecoder

from nextgpt_video.media import VideoClip


class T5VideoDecoder(DiffusersDecoder):
    """A diffusers text-to-video decoder conditioned on ``prompt_embeds [B, Q, d]`` alone."""

    fps: float
    """Frame rate given to the returned clips (set by the subclass)."""

    def _encode(self, pipeline: Any, prompts: list[str]) -> torch.Tensor:
        embeds, _ = pipeline.encode_prompt(
            prompts,
            do_classifier_free_guidance=False,
            max_sequence_length=self.condition_spec["prompt_embeds"].tokens,
            device=pipeline._execution_device,
        )
        return embeds

    def _encode_captions(self, pipeline: Any, captions: list[str]) -> Condition:
        return Condition(self.condition_spec, {"prompt_embeds": self._encode(pipeline, captions)})

    def _encode_negative(self, pipeline: Any) -> Condition:
        # What the call encodes when no negative prompt is given: "".
        return Condition(self.condition_spec, {"prompt_embeds": self._encode(pipeline, [""])})

    def _call_options(self, options: DecodeOptions) -> dict[str, Any]:
        return {
            "num_frames": options.num_frames,
            "height": options.height,
            "width": options.width,
            "max_sequence_length": self.condition_spec["prompt_embeds"].tokens,
            "output_type": "np",
        }

    def _to_media(self, output: Any, options: DecodeOptions) -> list[VideoClip]:
        # output.frames: float [B, T, H, W, 3] in [0, 1]; rounded as diffusers' numpy_to_pil does.
        frames = np.clip(np.round(np.asarray(output.frames) * 255.0), 0, 255).astype(np.uint8)
        return [VideoClip(frames=clip, fps=self.fps) for clip in frames]
