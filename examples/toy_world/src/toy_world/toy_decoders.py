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
from toy_world.decoder_training import SIZE as IMAGE_SIZE
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


def _world_sized_vae() -> Any:
    """A 3-block `AutoencoderKL` (latents 4 x 8 x 8 for a 32 x 32 picture): small enough to train
    in two minutes, wide enough to give back the world's flat colours and shapes exactly."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[16, 32, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        norm_num_groups=8,
    )


def build_image_pipeline(seed: int) -> Any:
    """A Stable Diffusion pipeline sized to learn the world's pictures on a CPU (random weights;
    `toy_world.decoder_training` trains its VAE and UNet): the VAE of `_world_sized_vae`, a UNet
    of (32, 64) channels with cross-attention in every block, and the tiny pipeline's random
    CLIP text encoder of width 32 (its caption embeddings already tell the captions apart).

    The tiny test pipeline (UNet channels (4, 8), cross-attention in one block) cannot learn
    where a shape goes and what it looks like in CPU minutes; this one does in about 1,000 steps."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from nextgpt.decoders import ddim_scheduler
    from nextgpt.decoders.diffusers_base import quiet_diffusers
    from nextgpt.tiny.text_encoders import tiny_clip_text_encoder
    from nextgpt.tiny.tokenizers import build_clip_tokenizer

    with torch.random.fork_rng(devices=[]), quiet_diffusers():
        torch.manual_seed(seed)
        tokenizer = build_clip_tokenizer()
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=IMAGE_SIZE // 4,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
            use_linear_projection=True,
        )
        return StableDiffusionPipeline(
            vae=_world_sized_vae(),
            text_encoder=tiny_clip_text_encoder(tokenizer, hidden_size=32, intermediate_size=64),
            tokenizer=tokenizer,
            unet=unet,
            scheduler=ddim_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )


def build_video_pipeline(seed: int) -> Any:
    """A zeroscope (text-to-video) pipeline sized to learn the world's clips on a CPU (random
    weights; `toy_world.decoder_training` trains its VAE and UNet): the VAE of
    `_world_sized_vae` applied frame by frame, a 3-D UNet of (32, 64) channels with
    cross-attention in every block, and a random CLIP text encoder of width 32.

    The tiny test pipeline's text encoder has width 4: its 77 x 4 conditions tell the captions
    apart but lie far from anything the captions' words predict (a least-squares map from the
    attributes retrieves fewer than half of the video captions; width 32: over 85 %), so no
    projector could learn to aim at them. The UNet's temporal convolutions start from random
    weights instead of diffusers' zeros: zeros keep a pre-trained image UNet intact when it is
    inflated to video, and there is none here; random ones tell the frames apart from the first
    step, and without that a frame cannot learn where along its path the shape is."""
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel
    from diffusers.models.resnet import TemporalConvLayer
    from nextgpt.decoders import ddim_scheduler
    from nextgpt.decoders.diffusers_base import quiet_diffusers
    from nextgpt.tiny.text_encoders import tiny_clip_text_encoder
    from nextgpt.tiny.tokenizers import build_clip_tokenizer

    with torch.random.fork_rng(devices=[]), quiet_diffusers():
        torch.manual_seed(seed)
        tokenizer = build_clip_tokenizer()
        unet = UNet3DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=IMAGE_SIZE // 4,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D"),
            up_block_types=("CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        for module in unet.modules():
            if isinstance(module, TemporalConvLayer):
                module.conv4[-1].reset_parameters()
        return TextToVideoSDPipeline(
            vae=_world_sized_vae(),
            text_encoder=tiny_clip_text_encoder(tokenizer, hidden_size=32, intermediate_size=64),
            tokenizer=tokenizer,
            unet=unet,
            scheduler=ddim_scheduler(),
        )


def inflate_from_image(video: Any, image: Any) -> dict[str, int]:
    """Start the toy zeroscope ``video`` pipeline from the trained toy Stable Diffusion ``image``
    one, as ModelScope and zeroscope were started from Stable Diffusion: the same VAE (applied
    frame by frame, with its latent scale) and CLIP text encoder, and the image UNet's weights in
    every spatial layer of the 3-D UNet (same names and shapes); the temporal layers keep their
    own. The video UNet then already draws a caption's colour and shape and only has to learn
    how they move, which it does in CPU minutes; from scratch it needs several times more steps.

    Returns how many UNet tensors were copied and how many temporal ones were kept."""
    video.vae.load_state_dict(image.vae.state_dict())
    video.vae.register_to_config(scaling_factor=image.vae.config.scaling_factor)
    video.text_encoder.load_state_dict(image.text_encoder.state_dict())
    target = video.unet.state_dict()
    spatial = {
        # a 1 x 1 convolution and a linear projection hold the same matrix
        name: value.reshape(target[name].shape) if name in target else value
        for name, value in image.unet.state_dict().items()
    }
    result = video.unet.load_state_dict(spatial, strict=False)
    if result.unexpected_keys:
        raise ValueError(
            f"the image UNet does not fit the video UNet's spatial layers: {', '.join(result.unexpected_keys[:5])}"
        )
    return {"copied": len(spatial), "temporal_kept": len(result.missing_keys)}
