"""The toy model's decoders: what they need so that their caption embeddings tell the world's
captions apart (a CLAP text encoder pre-trained on the sound captions for AudioLDM, a wider
random text encoder for zeroscope), and `caption_separation`, which measures it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from nextgpt.progress import bar

from toy_world import world as W
from toy_world.pretrain_encoder import AttributeHeads, attribute_labels
from toy_world.settings import BuildBudget


def caption_separation(decoder: Any, captions: Sequence[str]) -> dict[str, float]:
    """How well a decoder's caption embeddings tell ``captions`` apart: mean and max pairwise
    cosine and the smallest pairwise distance relative to the median one (flattened over the
    caption positions no caption pads)."""
    from toy_world.metrics import condition_mask, condition_tokens

    embeds = condition_tokens(decoder.condition_from_text(list(captions)))
    mask = condition_mask(decoder, list(captions))
    keep = mask.any(0)
    flat = embeds[:, keep].flatten(1)
    dist = torch.cdist(flat, flat)
    cos = F.normalize(flat, dim=-1) @ F.normalize(flat, dim=-1).T
    off = ~torch.eye(len(captions), dtype=torch.bool)
    return {
        "mean_pairwise_cosine": round(float(cos[off].mean()), 4),
        "max_pairwise_cosine": round(float(cos[off].max()), 4),
        "min_over_median_distance": round(float(dist[off].min() / dist[off].median()), 4),
    }


def pretrain_clap_text(
    pipeline: Any, train: list[W.Concept], budget: BuildBudget, seed: int, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Give the tiny AudioLDM pipeline a CLAP text encoder that knows the world's sounds.

    The tiny pipeline's CLAP text encoder (1 layer, width 8, 1 head) maps captions that are
    permutations of each other ("a low buzz then a middle beep" / "a middle beep then a low
    buzz") to almost the same vector, and no training separates them. It is replaced (in
    ``pipeline``) by a 2-layer, width-32 one with the same 8-d projection (what the UNet reads)
    and trained so that its normalised caption embedding, the AudioLDM condition, makes every
    attribute of a sound caption linearly readable and keeps distinct captions apart."""
    from transformers import ClapTextModelWithProjection

    config = pipeline.text_encoder.config
    config.update(
        {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        }
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipeline.text_encoder = ClapTextModelWithProjection(config)
    pipeline.register_modules(text_encoder=pipeline.text_encoder)
    encoder = pipeline.text_encoder
    tokenizer = pipeline.tokenizer
    captions = [c.caption for c in train]
    inputs = tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    labels = attribute_labels(train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = AttributeHeads(int(encoder.config.projection_dim))
        encoder.requires_grad_(True)
        encoder.train()
        optimizer = torch.optim.AdamW([*encoder.parameters(), *heads.parameters()], lr=3e-3, weight_decay=0.0)
        steps = bar(total=budget.clap_steps, desc="toy CLAP text encoder", unit="step")
        for _step in range(budget.clap_steps):
            embeds = F.normalize(encoder(inputs.input_ids, attention_mask=inputs.attention_mask).text_embeds, dim=-1)
            loss, acc = heads.loss_and_accuracy("audio", embeds, labels)
            # keep distinct captions apart on the sphere (uniformity), not only separable
            sim = embeds @ embeds.T - 2 * torch.eye(len(captions))
            loss = loss + 0.5 * torch.logsumexp(4 * sim, dim=-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps.update(1)
            steps.set_postfix(loss=f"{loss.item():.3f}", read=f"{acc.item():.2f}", refresh=False)
        steps.close()
        encoder.eval()
        encoder.requires_grad_(False)
    return {"steps": budget.clap_steps, "train_attributes_read": round(float(acc), 3)}


def build_video_pipeline(seed: int) -> Any:
    """The tiny zeroscope pipeline of ``nextgpt_video`` with a text encoder (and UNet
    cross-attention) of width 32 instead of 4, random like the image decoder's.

    The width-4 CLIP text encoder does tell the captions apart, but its 77 x 4 conditions are
    far from anything the captions' words predict: a least-squares map from the caption's
    attributes retrieves fewer than half of the video captions, train or held out (width 32:
    over 85 %), so no projector could learn to aim at them."""
    from nextgpt.decoders.diffusers_base import quiet_diffusers
    from nextgpt_video.decoder import TextToVideoDecoder

    with torch.random.fork_rng(devices=[]), quiet_diffusers():
        torch.manual_seed(seed)
        return TextToVideoDecoder.build_tiny_pipeline(text_width=32, text_ffn=64)
