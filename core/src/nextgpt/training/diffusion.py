"""The optional diffusion noise-prediction loss through a frozen decoder (as NExT-GPT's 2024
rewrite adds): noise the target media's latents at a random timestep, let the frozen denoiser
predict from the output projector's condition, and regress the scheduler's own target.

The target follows the scheduler's ``prediction_type`` (``epsilon``: the noise;
``v_prediction``: the velocity, e.g. SD-2 768-v; ``sample``: the clean latents), and the
min-SNR weighting (Hang et al. 2023; gamma 5 for images in the rewrite) is applied per sample
with the formula matching that prediction type.

How media become latents and how a condition reaches the denoiser differ per pipeline (VAE
latents for images, per-frame for video, a mel VAE and ``class_labels`` for AudioLDM), so a
decoder opts in by providing ``denoising_loss(condition, media, min_snr_gamma=None)``; this
module gives it `noise_prediction_loss` to build it from its own parts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from nextgpt.errors import ConfigError


def snr(scheduler: Any, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ``alpha_bar / (1 - alpha_bar)`` at ``timesteps``."""
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    return alphas / (1 - alphas)


def min_snr_weights(scheduler: Any, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample min-SNR-gamma loss weights for the scheduler's prediction type."""
    ratio = snr(scheduler, timesteps)
    clipped = torch.clamp(ratio, max=gamma)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return clipped / ratio
    if kind == "v_prediction":
        return clipped / (ratio + 1)
    if kind == "sample":
        return clipped
    raise ConfigError(f"min-SNR weighting: unknown prediction_type {kind!r}")


def prediction_target(
    scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the denoiser must predict, per the scheduler's ``prediction_type``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if kind == "sample":
        return latents
    raise ConfigError(f"diffusion loss: unknown prediction_type {kind!r}")


def noise_prediction_loss(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler: Any,
    latents: torch.Tensor,
    min_snr_gamma: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean (optionally min-SNR weighted) squared error of one denoising step.

    Args:
        denoise: ``(noisy_latents, timesteps) -> prediction`` (the frozen denoiser with the
            condition bound; gradients flow to the condition through it).
        scheduler: a diffusers noise scheduler (``add_noise``, ``alphas_cumprod``,
            ``config.prediction_type``, ``config.num_train_timesteps``).
        latents: ``[B, ...]`` clean latents of the target media (no grad needed).
        min_snr_gamma: clip the SNR weight at this value (None: plain mean).
    """
    batch = latents.shape[0]
    steps = int(scheduler.config.num_train_timesteps)
    timesteps = torch.randint(0, steps, (batch,), generator=generator, device="cpu").to(latents.device)
    noise = torch.randn(latents.shape, generator=generator, device="cpu", dtype=latents.dtype).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = prediction_target(scheduler, latents, noise, timesteps)
    prediction = denoise(noisy, timesteps)
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").flatten(1).mean(1)
    if min_snr_gamma is not None:
        per_sample = per_sample * min_snr_weights(scheduler, timesteps, min_snr_gamma)
    return per_sample.mean()
