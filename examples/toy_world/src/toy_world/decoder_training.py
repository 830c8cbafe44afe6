"""Training the toy decoders to draw the world: the tiny Stable Diffusion and zeroscope
pipelines learn to generate the world's images and videos from their caption embeddings.

A random tiny pipeline turns any condition into noise: its VAE and its UNet are random. Here,
for one modality, on freshly rendered items of every caption of the world (the decoders are
frozen stand-ins that know the whole world, as the real ones know the web):

1. the VAE is trained as an autoencoder (reconstruction plus a small KL term), so that its
   latents decode back into the world's pictures;
2. the scheduler becomes a v-prediction DDIM with a zero-terminal-SNR schedule (diffusers'
   ``rescale_betas_zero_snr``, sampling from the last timestep), which keeps the world's flat
   dark backgrounds dark (Lin et al. 2024);
3. the UNet is trained with the toolkit's denoising loss (`nextgpt.training.diffusion`, through
   the decoder's own ``_noise_prediction_loss``) on the VAE latents of the items, conditioned on
   the decoder's embedding of their captions (a tenth of them on the unconditional embedding,
   so that classifier-free guidance has something to contrast, and a share moved off their
   caption's embedding, `ConditionAugmentation`, so that an output projector's condition near a
   caption draws that caption).

The trained parts are written back into the pipeline; `toy_world.build` saves it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from nextgpt.conditions import Condition
from nextgpt.progress import bar

from toy_world import world as W

SIZE = 32
"""Side of the toy decoders' images and video frames."""
FRAMES = 4
"""Frames of the toy decoder's videos."""


@dataclass(frozen=True)
class ConditionAugmentation:
    """How far the UNet's training conditions stray from the caption embeddings.

    A real decoder was trained on millions of captions, so the space between their embeddings is
    filled and a condition near a caption's draws that caption. A toy decoder trained on the
    world's hundred-odd captions alone meets nothing between them, and an output projector's
    condition, nearer its caption than any other but still off it, can come out as a neighbour
    (a square drawn as a circle). So a share of the training conditions is moved off its caption:
    up to ``toward`` of the way to another caption's embedding (still nearer its own) plus
    Gaussian noise of ``noise`` times the embeddings' root mean square per element; the target
    stays the item of the caption itself.
    """

    fraction: float = 0.5
    """Share of the conditioned (not dropped) items moved."""
    toward: float = 0.4
    """Largest step towards another caption's embedding (uniform in [0, toward]); below 0.5."""
    noise: float = 0.1


@dataclass
class DecoderBudget:
    """Steps, batch and pool sizes of one decoder's training."""

    vae_steps: int
    unet_steps: int
    batch: int = 32
    vae_batch: int = 32
    """Frames per VAE step (the UNet's ``batch`` counts images or whole videos)."""
    items_per_caption: int = 3
    lr: float = 2e-3
    unconditional_fraction: float = 0.1
    augmentation: ConditionAugmentation | None = field(default_factory=ConditionAugmentation)
    """Conditions moved off the caption embeddings during UNet training (None: exact ones)."""


def zero_snr_scheduler(scheduler: Any) -> Any:
    """A v-prediction DDIM scheduler with zero terminal SNR, from ``scheduler``'s betas."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(
        scheduler.config,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
    )


def render_pixels(concept: W.Concept, rng: random.Random) -> np.ndarray:
    """uint8 pixels of one item at the decoder's size: ``[S, S, 3]`` for an image, ``[F, S, S, 3]``
    for a video (drawn at twice the size and averaged down, so edges are smooth)."""
    if concept.modality == "image":
        big = W.render_image(concept, rng, size=2 * SIZE).astype(np.float32)
        return big.reshape(SIZE, 2, SIZE, 2, 3).mean((1, 3)).round().astype(np.uint8)
    big = W.render_video(concept, rng, frames=FRAMES, size=2 * SIZE).astype(np.float32)
    return big.reshape(FRAMES, SIZE, 2, SIZE, 2, 3).mean((2, 4)).round().astype(np.uint8)


def _to_unit(pixels: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float ``[..., 3, H, W]`` in [-1, 1]."""
    tensor = torch.from_numpy(pixels.astype(np.float32) / 127.5 - 1.0)
    return tensor.movedim(-1, -3)


def warmup_cosine(optimizer: torch.optim.Optimizer, steps: int, warmup_fraction: float = 0.1) -> Any:
    """A learning-rate schedule rising linearly over the first ``warmup_fraction`` of ``steps``,
    then falling to zero along a half cosine."""
    warmup = max(1, round(warmup_fraction * steps))

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / max(steps, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def set_latent_scale(vae: Any, inputs: torch.Tensor) -> float:
    """Set ``vae``'s ``scaling_factor`` to one over the standard deviation of its latents of
    ``inputs`` (as Stable Diffusion's 0.18215 was chosen), so that the diffusion schedule meets
    latents of unit variance; returns it."""
    latents = torch.cat([vae.encode(inputs[i : i + 64]).latent_dist.mode() for i in range(0, len(inputs), 64)])
    scale = float(1.0 / latents.std().clamp(min=1e-6))
    vae.register_to_config(scaling_factor=scale)
    return scale


def train_vae(vae: Any, frames: torch.Tensor, steps: int, batch: int, lr: float, desc: str) -> float:
    """Autoencoder training of ``vae`` on ``frames`` ``[N, 3, H, W]``; returns the final MSE."""
    vae.requires_grad_(True)
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    progress = bar(total=steps, desc=desc, unit="step")
    mse = torch.tensor(float("nan"))
    for _ in range(steps):
        index = torch.randint(0, len(frames), (batch,))
        x = frames[index]
        posterior = vae.encode(x).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        mse = F.mse_loss(reconstruction, x)
        loss = mse + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        progress.update(1)
        progress.set_postfix(mse=f"{mse.item():.4f}", refresh=False)
    progress.close()
    vae.eval()
    vae.requires_grad_(False)
    return float(mse.detach())


def fit_denoiser(
    decoder: Any,
    embedded: Condition,
    rows: torch.Tensor,
    latents: torch.Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    unconditional_fraction: float,
    generator: torch.Generator,
    desc: str,
    augmentation: ConditionAugmentation | None = None,
) -> float:
    """Train ``decoder``'s denoiser (in place) with the toolkit's denoising loss (through the
    decoder's ``_noise_prediction_loss``): each step a random ``batch`` of ``latents``, item ``i``
    conditioned on row ``rows[i]`` of ``embedded``, an ``unconditional_fraction`` of them on its
    last row instead (the unconditional embedding: what classifier-free guidance contrasts), and
    with ``augmentation`` a share of the others moved off their rows (`augmented`).
    AdamW with warm-up and cosine decay, gradients clipped at 1; returns the last step's loss."""
    unconditional = embedded.batch_size - 1
    unet = decoder.denoiser
    unet.requires_grad_(True)
    unet.train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    schedule = warmup_cosine(optimizer, steps)
    progress = bar(total=steps, desc=desc, unit="step")
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        index = torch.randint(0, len(latents), (batch,), generator=generator)
        drop = torch.rand(batch, generator=generator) < unconditional_fraction
        chosen = torch.where(drop, unconditional, rows[index])
        condition = embedded.select(chosen.tolist())
        if augmentation is not None:
            condition = augmented(condition, embedded, chosen, ~drop, augmentation, generator)
        loss = decoder._noise_prediction_loss(condition, latents[index], None)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        progress.update(1)
        progress.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    progress.close()
    unet.eval()
    unet.requires_grad_(False)
    return float(loss.detach())


def augmented(
    condition: Condition,
    embedded: Condition,
    chosen: torch.Tensor,
    eligible: torch.Tensor,
    augmentation: ConditionAugmentation,
    generator: torch.Generator,
) -> Condition:
    """``condition`` (rows ``chosen`` of ``embedded``, whose last row is the unconditional one)
    with a share of its ``eligible`` items moved off their captions as ``augmentation`` says;
    masks are kept."""
    captions = embedded.batch_size - 1
    batch = len(chosen)
    moved = eligible & (torch.rand(batch, generator=generator) < augmentation.fraction)
    if captions < 2 or not bool(moved.any()):
        return condition
    other = (chosen + torch.randint(1, captions, (batch,), generator=generator)) % captions
    step = torch.rand(batch, generator=generator) * augmentation.toward * moved
    tensors = {}
    for name, value in condition.tensors.items():
        table = embedded[name]
        shape = (batch,) + (1,) * (value.dim() - 1)
        rms = table[:captions].float().pow(2).mean().sqrt()
        noise = torch.randn(value.shape, generator=generator) * augmentation.noise * rms
        shifted = value + step.view(shape) * (table[other] - value) + noise * moved.view(shape)
        tensors[name] = shifted.to(value.dtype)
    return Condition(condition.spec, tensors, dict(condition.masks))


def train_pixel_decoder(
    decoder: Any,
    concepts: list[W.Concept],
    budget: DecoderBudget,
    seed: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``decoder``'s VAE and UNet (in place) to draw ``concepts`` (images or videos);
    returns what was trained and the final losses."""
    modality = concepts[0].modality
    pipeline = decoder.pipeline
    rng = random.Random(f"{seed}-{modality}-decoder")
    pool = [c for c in concepts for _ in range(budget.items_per_caption)]
    pixels = _to_unit(np.stack([render_pixels(c, rng) for c in pool]))  # [N, 3, S, S] or [N, F, 3, S, S]
    captions = [c.caption for c in pool]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        frames = pixels if pixels.ndim == 4 else pixels.flatten(0, 1)
        vae_mse = float("nan")
        latent_scale = float(pipeline.vae.config.scaling_factor)
        if budget.vae_steps > 0:  # (none: a VAE taken over from another decoder is kept as it is)
            vae_mse = train_vae(
                pipeline.vae, frames, budget.vae_steps, budget.vae_batch, budget.lr, f"toy {modality} VAE"
            )
            latent_scale = set_latent_scale(pipeline.vae, frames)
        with torch.no_grad():
            latents = torch.cat([decoder._vae_latents(frames[i : i + 64]) for i in range(0, len(frames), 64)])
            if pixels.ndim == 5:  # [N*F, c, h, w] -> [N, c, F, h, w], as the 3-D UNet reads them
                latents = latents.unflatten(0, (len(pool), pixels.shape[1])).permute(0, 2, 1, 3, 4)
            unique = sorted(set(captions))
            row = {caption: i for i, caption in enumerate(unique)}
            negative = decoder.negative_condition()
            # the unconditional embedding is the last row
            embedded = decoder.condition_from_text(unique)
            if negative is not None:
                embedded = Condition.cat([embedded, negative.to(dtype=embedded.dtype)])
        pipeline.scheduler = zero_snr_scheduler(pipeline.scheduler)
        rows = torch.tensor([row[caption] for caption in captions])
        generator = torch.Generator().manual_seed(seed)
        loss = fit_denoiser(
            decoder,
            embedded,
            rows,
            latents,
            steps=budget.unet_steps,
            batch=budget.batch,
            lr=budget.lr,
            unconditional_fraction=budget.unconditional_fraction if negative is not None else 0.0,
            generator=generator,
            desc=f"toy {modality} UNet",
            augmentation=budget.augmentation,
        )
    return {
        "items": len(pool),
        "vae_steps": budget.vae_steps,
        "vae_mse": round(vae_mse, 5),
        "latent_scale": round(latent_scale, 5),
        "unet_steps": budget.unet_steps,
        "unet_loss": round(loss, 5),
    }
