"""Training recipes: today's default, and ``legacy``, the way the 2023 NExT-GPT release trained.

The release's code differs from its paper in a few places (reference/nextgpt-facts.md,
"Reference training recipe details"); ``recipe: legacy`` reproduces them so its numbers can be
compared with the release:

- the whole embedding and lm_head train in every stage (the release resized them after LoRA was
  applied, which left both matrices trainable); the default trains only the signal-token rows,
  and only where the stage says (stage 2), so the pretrained vocabulary keeps its values;
- weight decay applies to every parameter; the default spares embeddings, biases and norms
  (decaying a norm's scale or a word's embedding pulls it towards zero for no benefit);
- the peak learning rate is 5e-4 in every stage; the default is 4e-4 (the paper's stages 1-2);
- the alignment loss weighs every modality 1 in stage 2 and uses each modality's
  ``loss_weight`` (video 2) only in stage 3; the default uses ``loss_weight`` in every stage;
- the caption prompt of X-caption pairs is ``generate a caption`` (a data source's own
  ``prompt`` still wins); the default is `nextgpt.data.DatasetSource`'s ``Generate a caption.``;
- captions longer than a decoder's text encoder takes (77 tokens for Stable Diffusion) are cut
  from the start for the stage-2 targets; the default cuts the end, as diffusers pipelines do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RecipeName = Literal["default", "legacy"]


@dataclass(frozen=True)
class Recipe:
    """What a recipe changes in training (see the module docstring)."""

    name: str
    lr: float
    """Peak learning rate when ``lr`` is not given."""
    embeddings_every_stage: bool
    """The whole embedding and lm_head train in every stage (``llm.train_embeddings=full``)."""
    decay_everything: bool
    """Weight decay on every parameter (embeddings, biases and norms included)."""
    uniform_weights_in_stage: tuple[int, ...]
    """Stages whose alignment loss weighs every modality 1."""
    caption_prompt: str | None
    """Prompt of X-caption pairs whose source sets none (None: the data's default)."""
    captions_cut_at_start: bool = False
    """Stage-2 caption targets longer than a decoder's text encoder takes are cut from the start
    (`Decoder.cut_long_captions_at_start`), as the release's tokenizer did; default: at the end."""


RECIPES: dict[str, Recipe] = {
    "default": Recipe("default", 4e-4, False, False, (), None),
    "legacy": Recipe("legacy", 5e-4, True, True, (2,), "generate a caption", captions_cut_at_start=True),
}
