"""The toy AudioLDM: a pipeline sized for the world's two-tone sounds, and its training.

AudioLDM turns its condition (a CLAP caption embedding) into VAE latents of a log-mel
spectrogram, which a HiFi-GAN vocoder turns into a waveform. The tiny test pipeline (8 mel
bands, a 4-sample hop, random parts) makes noise. `build_sound_pipeline` sizes the three parts
for the world (32 bands, a 125-sample hop: 128 frames a second), and `train_sound_decoder`
trains them on freshly rendered sounds of every caption of the world (the decoders are frozen
stand-ins that know the whole world, as the real ones know the web):

1. the vocoder, log-mel -> waveform, with a multi-resolution STFT magnitude loss (no
   discriminator: the world reader reads pitch and harmonics from the spectrum, and this loss
   gets both right);
2. the VAE, as an autoencoder of the log-mels, its ``scaling_factor`` then set so that latents
   have unit variance (as Stable Diffusion's was);
3. the UNet, with the toolkit's denoising loss (`nextgpt.training.diffusion`, through the
   decoder's ``_noise_prediction_loss``) on the VAE latents, conditioned on the decoder's CLAP
   embedding of each caption (a tenth on the unconditional one), sampled by the
   zero-terminal-SNR v-prediction DDIM of `toy_world.decoder_training`.

The log-mels are `nextgpt_audio.mel.log_mel` with the vocoder's settings, the same front end
``AudioLDMDecoder.denoising_loss`` uses.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from nextgpt.conditions import Condition
from nextgpt.progress import bar

from toy_world import world as W
from toy_world.decoder_training import set_latent_scale, warmup_cosine, zero_snr_scheduler

MEL_BANDS = 32
"""Mel bands of the toy AudioLDM (its vocoder's input width)."""
HOP = 125
"""Samples per mel frame (the vocoder's upsampling, 5 x 5 x 5): 128 frames a second."""
FRAMES = round(W.AUDIO_SECONDS * W.SAMPLE_RATE / HOP)
"""Mel frames of one world sound."""


@dataclass
class SoundDecoderBudget:
    """Steps, batches and pool size of the toy AudioLDM's training."""

    vocoder_steps: int
    vae_steps: int
    unet_steps: int
    vocoder_batch: int = 16
    vocoder_frames: int = 32
    """Mel frames of each random crop the vocoder trains on (a quarter of a sound)."""
    vae_batch: int = 32
    batch: int = 32
    items_per_caption: int = 6
    lr: float = 2e-3
    unconditional_fraction: float = 0.1


def build_sound_pipeline(seed: int) -> Any:
    """An AudioLDM pipeline sized for the world's sounds (random weights): a HiFi-GAN vocoder
    from 32 mel bands with a 125-sample hop, a 3-block single-channel VAE (latents 4 x 32 x 8 for
    a second), a (32, 64)-channel UNet reading the CLAP embedding as its class embedding, and the
    tiny pipeline's CLAP text encoder and tokenizer (`toy_decoders.pretrain_clap_text` replaces
    and trains the encoder)."""
    from diffusers import AudioLDMPipeline, AutoencoderKL, UNet2DConditionModel
    from nextgpt.decoders import ddim_scheduler
    from nextgpt.decoders.diffusers_base import quiet_diffusers
    from nextgpt_audio.decoder import AudioLDMDecoder
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    with torch.random.fork_rng(devices=[]), quiet_diffusers():
        torch.manual_seed(seed)
        tiny = AudioLDMDecoder.build_tiny_pipeline()
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=(FRAMES // 4, MEL_BANDS // 4),
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            mid_block_type="UNetMidBlock2D",
            class_embed_type="simple_projection",
            projection_class_embeddings_input_dim=int(tiny.text_encoder.config.projection_dim),
            class_embeddings_concat=True,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            block_out_channels=[16, 32, 32],
            in_channels=1,
            out_channels=1,
            down_block_types=["DownEncoderBlock2D"] * 3,
            up_block_types=["UpDecoderBlock2D"] * 3,
            latent_channels=4,
            norm_num_groups=8,
        )
        vocoder = SpeechT5HifiGan(
            SpeechT5HifiGanConfig(
                model_in_dim=MEL_BANDS,
                sampling_rate=W.SAMPLE_RATE,
                upsample_initial_channel=64,
                upsample_rates=[5, 5, 5],
                upsample_kernel_sizes=[10, 10, 10],
                resblock_kernel_sizes=[3, 7],
                resblock_dilation_sizes=[[1, 3], [1, 3]],
                normalize_before=False,
            )
        )
        return AudioLDMPipeline(
            vae=vae,
            text_encoder=tiny.text_encoder,
            tokenizer=tiny.tokenizer,
            unet=unet,
            scheduler=ddim_scheduler(),
            vocoder=vocoder,
        )


def render_sounds(concepts: list[W.Concept], per_caption: int, seed: int) -> tuple[list[str], torch.Tensor]:
    """``(captions, waveforms [N, samples])``: ``per_caption`` freshly rendered sounds of each concept."""
    rng = random.Random(f"{seed}-audio-decoder")
    pool = [c for c in concepts for _ in range(per_caption)]
    waves = np.stack([W.render_audio(c, rng)[0] for c in pool])
    return [c.caption for c in pool], torch.from_numpy(waves)


def stft_loss(produced: torch.Tensor, target: torch.Tensor, sizes: tuple[int, ...] = (256, 512, 1024)) -> torch.Tensor:
    """Multi-resolution STFT magnitude loss: spectral convergence plus log-magnitude L1, averaged
    over the FFT ``sizes`` (hop a quarter of each)."""
    total = produced.new_zeros(())
    for size in sizes:
        window = torch.hann_window(size, device=produced.device)
        spectra = [
            torch.stft(x, size, hop_length=size // 4, window=window, return_complex=True).abs().clamp(min=1e-7)
            for x in (produced, target)
        ]
        convergence = torch.linalg.norm(spectra[1] - spectra[0]) / torch.linalg.norm(spectra[1])
        total = total + convergence + F.l1_loss(spectra[0].log(), spectra[1].log())
    return total / len(sizes)


def train_vocoder(
    vocoder: Any, mels: torch.Tensor, waves: torch.Tensor, budget: SoundDecoderBudget, generator: torch.Generator
) -> float:
    """Train ``vocoder`` (in place) to turn random crops of ``mels [N, T, bands]`` into the
    matching samples of ``waves [N, T * hop]``; returns the final loss."""
    hop = waves.shape[1] // mels.shape[1]
    crop = min(budget.vocoder_frames, mels.shape[1])
    vocoder.requires_grad_(True)
    vocoder.train()
    optimizer = torch.optim.AdamW(vocoder.parameters(), lr=budget.lr, betas=(0.8, 0.99), weight_decay=0.0)
    schedule = warmup_cosine(optimizer, budget.vocoder_steps)
    progress = bar(total=budget.vocoder_steps, desc="toy audio vocoder", unit="step")
    loss = torch.tensor(float("nan"))
    for _ in range(budget.vocoder_steps):
        index = torch.randint(0, len(mels), (budget.vocoder_batch,), generator=generator)
        start = int(torch.randint(0, mels.shape[1] - crop + 1, (1,), generator=generator))
        produced = vocoder(mels[index, start : start + crop])
        target = waves[index, start * hop : (start + crop) * hop]
        loss = stft_loss(produced, target)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vocoder.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        progress.update(1)
        progress.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    progress.close()
    vocoder.eval()
    vocoder.requires_grad_(False)
    return float(loss.detach())


def train_sound_decoder(
    decoder: Any,
    concepts: list[W.Concept],
    budget: SoundDecoderBudget,
    seed: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the vocoder, VAE and UNet of ``decoder``'s AudioLDM pipeline (in place) to make the
    sounds of ``concepts``; returns what was trained and the final losses. The pipeline's CLAP
    text encoder must already know the captions (`toy_decoders.pretrain_clap_text`)."""
    from nextgpt_audio.mel import log_mel, normalise_waveform

    from toy_world.decoder_training import train_vae

    pipeline = decoder.pipeline
    settings = decoder.mel_settings()
    frames = round(W.AUDIO_SECONDS * settings.sample_rate / settings.hop)
    captions, waves = render_sounds(concepts, budget.items_per_caption, seed)
    mels = torch.stack([log_mel(w, settings, frames) for w in waves])  # [N, T, bands]
    # the vocoder's target: the waveform as log_mel saw it (loudness-normalised, cut to the frames)
    targets = torch.stack([normalise_waveform(w)[: frames * settings.hop] for w in waves])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        vocoder_loss = train_vocoder(pipeline.vocoder, mels, targets, budget, generator)
        vae_mse = train_vae(pipeline.vae, mels[:, None], budget.vae_steps, budget.vae_batch, budget.lr, "toy audio VAE")
        set_latent_scale(pipeline.vae, mels[:, None])
        with torch.no_grad():
            latents = torch.cat([decoder._vae_latents(mels[i : i + 64, None]) for i in range(0, len(mels), 64)])
            unique = sorted(set(captions))
            row = {caption: i for i, caption in enumerate(unique)}
            embedded = Condition.cat([decoder.condition_from_text(unique), decoder.negative_condition()])
        pipeline.scheduler = zero_snr_scheduler(pipeline.scheduler)
        unet = decoder.denoiser
        unet.requires_grad_(True)
        unet.train()
        optimizer = torch.optim.AdamW(unet.parameters(), lr=budget.lr, weight_decay=0.0)
        schedule = warmup_cosine(optimizer, budget.unet_steps)
        progress = bar(total=budget.unet_steps, desc="toy audio UNet", unit="step")
        loss = torch.tensor(float("nan"))
        for _ in range(budget.unet_steps):
            index = torch.randint(0, len(captions), (budget.batch,), generator=generator)
            drop = torch.rand(budget.batch, generator=generator) < budget.unconditional_fraction
            rows = [len(unique) if d else row[captions[i]] for i, d in zip(index.tolist(), drop.tolist(), strict=True)]
            loss = decoder._noise_prediction_loss(embedded.select(rows), latents[index], None)
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
    return {
        "items": len(captions),
        "vocoder_steps": budget.vocoder_steps,
        "vocoder_loss": round(vocoder_loss, 5),
        "vae_steps": budget.vae_steps,
        "vae_mse": round(vae_mse, 5),
        "unet_steps": budget.unet_steps,
        "unet_loss": round(float(loss.detach()), 5),
    }
