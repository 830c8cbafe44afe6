"""`CLIPTextDecoder`: the condition hooks shared by pipelines conditioned on one CLIP text encoder.

Stable Diffusion 1.x/2.x (``StableDiffusionPipeline``), zeroscope / ModelScope
(``TextToVideoSDPipeline``) and the pipelines diffusers copies from them feed their UNet the
text encoder's last hidden state, ``prompt_embeds [B, Q, d]`` (``Q`` = the tokenizer's
``model_max_length``, 77 for CLIP; ``d`` = the encoder's width), and embed captions with
``encode_prompt(prompt, device, num_per_prompt, do_classifier_free_guidance, ...)``. A backend
for such a pipeline subclasses this class and adds only the pipeline class, its tiny pipeline,
its call options and its media.
"""

from __future__ import annotations

from typing import Any

import torch

from nextgpt.conditions import Condition, ConditionSpec
from nextgpt.decoders.diffusers_base import DiffusersDecoder


class CLIPTextDecoder(DiffusersDecoder):
    """A `DiffusersDecoder` whose pipeline is conditioned on ``prompt_embeds [Q, d]`` from one CLIP
    text encoder through ``encode_prompt``."""

    def _read_condition_spec(self, location: str) -> ConditionSpec:
        config = self.text_encoder_config(location)
        length = self.tokenizer_max_length(location, fallback=config.max_position_embeddings)
        return ConditionSpec.sequence(length, config.hidden_size)

    def _encode_captions(self, pipeline: Any, captions: list[str]) -> Condition:
        embeds, _ = pipeline.encode_prompt(captions, pipeline._execution_device, 1, False)
        return Condition(self.condition_spec, {"prompt_embeds": embeds})

    def _encode_negative(self, pipeline: Any) -> Condition:
        # The pipeline's own unconditional path: given prompt_embeds and no negative prompt,
        # encode_prompt embeds "" padded to the condition length.
        device = pipeline._execution_device
        shape = self.condition_spec["prompt_embeds"].shape
        dummy = torch.zeros(1, *shape, dtype=pipeline.text_encoder.dtype, device=device)
        _, negative = pipeline.encode_prompt(None, device, 1, True, prompt_embeds=dummy)
        return Condition(self.condition_spec, {"prompt_embeds": negative})
