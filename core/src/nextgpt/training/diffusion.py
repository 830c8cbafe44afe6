"""The optional diffusion noise-prediction loss through a frozen decoder (as NExT-GPT's 2024
rewrite adds): noise the target media's latents at a random timestep, let the frozen denoiser
predict from the output projector's condition, and regress the scheduler's own target.

The target follows the scheduler's ``prediction_type`` (``epsilon``: the noise;
``v_prediction``: the velocity, e.g. SD-2 768-v; ``sample``: the clean latents), and the
min-SNR weighting (Hang et al. 2023; gamma 5 for images in the rewrite) is applied per sample
with the formula matching that prediction type.

How media become latents and how a condition reaches the denoiser differ per pipeline (VAE
latents for images, per-frame for video, a mel VAE and ``class_labels`` for AudioLDM, the
prompt attention mask for PixArt), so a decoder opts in by implementing
``Decoder.denoising_loss(condition, media, min_snr_gamma=None)`` and declaring
``supports_denoising_loss = True``; this module gives it `noise_prediction_loss` (discrete-time
schedulers: DDPM, DDIM, DPM-Solver...; CogVideoX's v-prediction), `edm_prediction_loss`
(EDM-preconditioned continuous-sigma schedulers, e.g. Stable Audio's) and `flow_matching_loss`
(rectified-flow transformers: FLUX, Wan) to build it from its own parts.
"""

from __future__ import annotations

import math
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


def edm_prediction_loss(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler: Any,
    latents: torch.Tensor,
    min_snr_gamma: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean (optionally min-SNR weighted) squared error of one denoising step of an EDM-preconditioned
    denoiser (Karras et al. 2022), for the continuous-sigma schedulers of diffusers that expose
    ``precondition_inputs`` / ``precondition_noise`` (EDM Euler / DPM-Solver, the cosine
    DPM-Solver of Stable Audio).

    A noise level per sample is drawn with ``atan(sigma / sigma_data)`` uniform between those of
    the scheduler's ``sigma_min`` and ``sigma_max`` (uniform cosine time, as v-diffusion models are
    trained); the denoiser sees ``precondition_inputs(x + sigma * noise)`` at
    ``precondition_noise(sigma)``. Its raw output ``F`` is regressed on the target that makes the
    preconditioned estimate ``c_skip * x_t + c_out * F`` equal the clean latents: ``(x - c_skip
    * x_t) / c_out`` (the velocity for ``v_prediction``); its squared error is EDM's
    ``lambda(sigma) * |D - x|^2`` with ``lambda = 1 / c_out^2``. Min-SNR weights use
    ``SNR = sigma_data^2 / sigma^2``.

    Args:
        denoise: ``(model_input, noise_levels) -> F`` (the frozen denoiser with the condition bound).
        scheduler: a diffusers EDM-style scheduler (``config.sigma_min``, ``sigma_max``,
            ``sigma_data``, ``prediction_type`` of ``epsilon`` or ``v_prediction``).
        latents: ``[B, ...]`` clean latents of the target media (no grad needed).
        min_snr_gamma: clip the SNR weight at this value (None: plain mean).
    """
    config = scheduler.config
    kind = config.prediction_type
    if kind not in ("epsilon", "v_prediction"):
        raise ConfigError(f"diffusion loss: EDM preconditioning has no prediction_type {kind!r}")
    data = float(config.sigma_data)
    low, high = math.atan(config.sigma_min / data), math.atan(config.sigma_max / data)
    batch = latents.shape[0]
    angle = low + (high - low) * torch.rand(batch, generator=generator, device="cpu", dtype=torch.float64)
    sigma = (data * torch.tan(angle)).to(latents.device, torch.float32)
    noise = torch.randn(latents.shape, generator=generator, device="cpu", dtype=latents.dtype).to(latents.device)
    s = sigma.view(-1, *([1] * (latents.ndim - 1)))
    noisy = latents + noise * s.to(latents.dtype)
    output = denoise(scheduler.precondition_inputs(noisy, s.to(latents.dtype)), scheduler.precondition_noise(sigma))
    c_skip = data**2 / (s**2 + data**2)
    c_out = s * data / (s**2 + data**2).sqrt() * (1 if kind == "epsilon" else -1)
    target = (latents.float() - c_skip * noisy.float()) / c_out
    per_sample = F.mse_loss(output.float(), target, reduction="none").flatten(1).mean(1)
    if min_snr_gamma is not None:
        ratio = data**2 / sigma**2
        clipped = torch.clamp(ratio, max=min_snr_gamma)
        per_sample = per_sample * (clipped / ratio if kind == "epsilon" else clipped / (ratio + 1))
    return per_sample.mean()


def flow_matching_loss(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    latents: torch.Tensor,
    min_snr_gamma: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean (optionally min-SNR weighted) squared error of one step of a rectified-flow denoiser
    (FLUX, Wan, SD3: diffusers' ``FlowMatchEulerDiscreteScheduler`` family).

    A noise level ``sigma`` per sample is drawn uniformly in (0, 1); the denoiser sees
    ``x_sigma = (1 - sigma) * x + sigma * noise`` and is regressed on the flow's velocity
    ``noise - x``, as these models are trained. Min-SNR weights use ``SNR = ((1 - sigma) /
    sigma)^2`` and the epsilon rule ``min(SNR, gamma) / SNR`` (the velocity's error is the noise
    error divided by ``1 - sigma``).

    Args:
        denoise: ``(noisy_latents, sigmas) -> velocity`` (the frozen denoiser with the condition
            bound; the backend turns ``sigmas`` into the timesteps its transformer takes).
        latents: ``[B, ...]`` clean latents of the target media (no grad needed).
        min_snr_gamma: clip the SNR weight at this value (None: plain mean).
    """
    batch = latents.shape[0]
    sigma = torch.rand(batch, generator=generator, device="cpu").clamp(1e-3, 1 - 1e-3).to(latents.device)
    noise = torch.randn(latents.shape, generator=generator, device="cpu", dtype=latents.dtype).to(latents.device)
    s = sigma.view(-1, *([1] * (latents.ndim - 1))).to(latents.dtype)
    noisy = (1 - s) * latents + s * noise
    output = denoise(noisy, sigma)
    per_sample = F.mse_loss(output.float(), (noise - latents).float(), reduction="none").flatten(1).mean(1)
    if min_snr_gamma is not None:
        ratio = ((1 - sigma) / sigma) ** 2
        per_sample = per_sample * torch.clamp(ratio, max=min_snr_gamma) / ratio
    return per_sample.mean()
