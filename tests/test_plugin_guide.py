"""The plugin guide's decoder walkthrough runs as written: its PixArt-alpha backend, taken from
docs/plugin-guide.md and loaded as an in-process plugin, passes the decoder-backend kit and
generates what a direct pipeline call does."""

from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np
import torch
from nextgpt.plugins import load_plugins
from nextgpt.testing import DecoderBackendTests

GUIDE = Path(__file__).parents[1] / "docs" / "plugin-guide.md"


def guide_plugin() -> types.ModuleType:
    """The guide's ``nextgpt_pixart_alpha`` module, executed from its code block."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    (source,) = [b for b in blocks if "class PixArtAlphaDecoder" in b]
    module = types.ModuleType("nextgpt_pixart_alpha")
    exec(compile(source, f"{GUIDE}:nextgpt_pixart_alpha", "exec"), module.__dict__)
    return module


PLUGIN = guide_plugin()


class TestGuidePixArtAlpha(DecoderBackendTests):
    modality, backend = "image", "pixart-alpha"
    plugins = ("image", "pixart_alpha")
    extra_plugins = {"pixart_alpha": PLUGIN}


def test_guide_backend_equals_a_direct_pipeline_call() -> None:
    registry = load_plugins(allow=["image", "pixart_alpha"], extra_plugins={"pixart_alpha": PLUGIN})
    decoder = registry.decoder_backend("image", "pixart-alpha").build("tiny")
    condition = decoder.condition_from_text(["a red circle", "a blue square"])
    negative = decoder.negative_condition().expand(2)
    toolkit = decoder.generate(condition, decoder.defaults.model_copy(update={"seed": 1}))
    direct = decoder.pipeline(
        prompt_embeds=condition["prompt_embeds"],
        prompt_attention_mask=condition.mask("prompt_embeds"),
        negative_prompt=None,
        negative_prompt_embeds=negative["prompt_embeds"],
        negative_prompt_attention_mask=negative.mask("prompt_embeds"),
        num_inference_steps=2,
        guidance_scale=4.5,
        height=32,
        width=32,
        use_resolution_binning=False,
        generator=torch.Generator().manual_seed(1),
    ).images
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(toolkit, direct, strict=True))
