"""A toy AudioLDM that makes the world's sounds: a pipeline sized for them, its training on a
CPU, and `sound_ceiling`, the share of captions whose generated sound the world reader reads
right.

AudioLDM turns its condition (a normalised CLAP caption embedding) into VAE latents of a log-mel
spectrogram, which a HiFi-GAN vocoder turns into a waveform. The tiny test pipeline (8 mel
bands, a 4-sample hop, random parts) makes noise. Here:

* `build_sound_pipeline` sizes the parts for the world: a vocoder from `MEL_BANDS` bands with a
  hop of `HOP` samples (100 frames a second), a single-channel VAE with latents 4 x 25 x 8 for a
  second, a small UNet reading the CLAP embedding as its class embedding, and the tiny
  pipeline's CLAP text encoder and tokenizer (`toy_decoders.pretrain_clap_text` replaces and
  trains the encoder).
* `train_sound_decoder` trains, on freshly rendered sounds of every caption (the decoders are
  frozen stand-ins that know the whole world, as the real ones know the web), (a) the vocoder
  with a multi-resolution STFT magnitude loss, (b) the VAE as an autoencoder of the log-mels
  and (c) the UNet with the toolkit's denoising loss on the VAE latents, conditioned on the
  decoder's CLAP embeddings, sampled by the zero-terminal-SNR v-prediction DDIM of
  `toy_world.decoder_training`.

Why a hop of 160 samples: a vocoder fed a steady mel frame (a held tone) is a network applied
the same way to every frame, so its output repeats every hop; it can only hold tones at
multiples of the frame rate. At 100 frames a second the world's pitches (300, 700, 1600 Hz) and
their odd harmonics are such multiples, so pitch and timbre both come out where the reader
looks for them (at 128 frames a second a 300 Hz buzz would come out at 256 Hz with its third
harmonic at 896 Hz, not 768 Hz, and read as a beep).

The log-mels are `nextgpt_audio.mel.log_mel` with the vocoder's settings, the front end
``AudioLDMDecoder.denoising_loss`` uses, so the trained pipeline also serves that loss.

Known limit: the vocoder, trained for a few hundred steps with the STFT loss alone, gets every
pitch right but makes the odd harmonics too weak, and the 4.8 kHz third harmonic of a high buzz
hardly at all, so middle and high buzzes can read as beeps. The VAE and the UNet pass on what
the vocoder is given (their round trip reads as well as the vocoder on true log-mels), so the
vocoder bounds what `sound_ceiling` reports. It is not the data: trained on the sounds of one
caption alone ("a middle buzz then a middle buzz"), or on tones without pitch jitter, it still
leaves out the 2.1 kHz harmonic. Harmonics that a variant makes early in training (upsampling
8 x 5 x 2 x 2, or kernels twice the rates) are trained away within a few hundred steps, for
beeps and buzzes alike; only the low buzz's harmonics (0.9 and 1.5 kHz) survive. Periodic
activations (BigVGAN's Snake) and an adversarial loss with period discriminators are the known
remedies for a vocoder's harmonics; `SpeechT5HifiGan` has no periodic activation, and an
adversarial phase is not tried here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from nextgpt.conditions import Condition
from nextgpt.progress import bar

from toy_world import world as W
from toy_world.decoder_training import fit_denoiser, set_latent_scale, warmup_cosine, zero_snr_scheduler

MEL_BANDS = 32
"""Mel bands of the toy AudioLDM (its vocoder's input width)."""
UPSAMPLE_RATES = (8, 5, 4)
"""The vocoder's upsampling stages; their product is the hop."""
HOP = int(np.prod(UPSAMPLE_RATES))
"""Samples per mel frame: 160, 100 frames a second at 16 kHz (AudioLDM's own hop)."""
FRAMES = round(W.AUDIO_SECONDS * W.SAMPLE_RATE / HOP)
"""Mel frames of one world sound (100)."""
LATENT_DOWNSAMPLING = 4
"""How much the VAE shrinks both mel axes (latents 4 x 25 x 8 for one second)."""


@dataclass
class SoundDecoderBudget:
    """Steps, batches, pool size and learning rates of the toy AudioLDM's training."""

    vocoder_steps: int = 300
    vae_steps: int = 200
    unet_steps: int = 600
    vocoder_batch: int = 16
    vocoder_frames: int = 24
    """Mel frames of each random crop the vocoder trains on (a quarter of a sound)."""
    vae_batch: int = 8
    batch: int = 32
    items_per_caption: int = 6
    vocoder_lr: float = 2e-3
    lr: float = 2e-3
    unconditional_fraction: float = 0.1

    @classmethod
    def small(cls) -> SoundDecoderBudget:
        """A few steps of each part on one sound per caption (tests)."""
        return cls(
            vocoder_steps=4,
            vae_steps=4,
            unet_steps=4,
            vocoder_batch=4,
            vocoder_frames=8,
            vae_batch=8,
            batch=8,
            items_per_caption=1,
        )


# -- the pipeline -----------------------------------------------------------------------------------


def build_sound_pipeline(seed: int) -> Any:
    """An ``AudioLDMPipeline`` sized for the world's sounds, with random weights drawn from
    ``seed``.

    * vocoder: ``SpeechT5HifiGan`` from `MEL_BANDS` log-mel bands, upsampling 8 x 5 x 4 (hop 160)
      through 128 -> 64 -> 32 -> 16 channels, one 3-tap residual block per stage; it normalises
      its input with per-band ``mean`` / ``scale`` buffers, which training sets from the data;
    * VAE: ``AutoencoderKL`` of one channel, blocks (16, 32, 32): a ``[1, 100, 32]`` log-mel
      becomes latents ``[4, 25, 8]``;
    * UNet: (32, 64) channels, self-attention in the middle, the 8-d CLAP embedding projected as
      a class embedding and concatenated to the time embedding (as AudioLDM does);
    * the tiny pipeline's CLAP text encoder (projection 8) and byte-level RoBERTa tokenizer.
    """
    from diffusers import AudioLDMPipeline, AutoencoderKL, UNet2DConditionModel
    from nextgpt.decoders import ddim_scheduler
    from nextgpt.decoders.diffusers_base import quiet_diffusers
    from nextgpt_audio.decoder import AudioLDMDecoder
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    with torch.random.fork_rng(devices=[]), quiet_diffusers():
        torch.manual_seed(seed)
        tiny = AudioLDMDecoder.build_tiny_pipeline()
        vocoder = SpeechT5HifiGan(
            SpeechT5HifiGanConfig(
                model_in_dim=MEL_BANDS,
                sampling_rate=W.SAMPLE_RATE,
                upsample_initial_channel=128,
                upsample_rates=list(UPSAMPLE_RATES),
                upsample_kernel_sizes=list(UPSAMPLE_RATES),
                resblock_kernel_sizes=[3],
                resblock_dilation_sizes=[[1, 3]],
                normalize_before=True,
            )
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
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=(FRAMES // LATENT_DOWNSAMPLING, MEL_BANDS // LATENT_DOWNSAMPLING),
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
        return AudioLDMPipeline(
            vae=vae,
            text_encoder=tiny.text_encoder,
            tokenizer=tiny.tokenizer,
            unet=unet,
            scheduler=ddim_scheduler(),
            vocoder=vocoder,
        )


# -- data -------------------------------------------------------------------------------------------


def render_sounds(concepts: Sequence[W.Concept], per_caption: int, seed: int) -> tuple[list[str], torch.Tensor]:
    """``(captions, waveforms [N, samples])``: ``per_caption`` freshly rendered sounds of each concept."""
    rng = random.Random(f"{seed}-audio-decoder")
    pool = [c for c in concepts for _ in range(per_caption)]
    waves = np.stack([W.render_audio(c, rng)[0] for c in pool])
    return [c.caption for c in pool], torch.from_numpy(waves)


def sound_mels(waves: torch.Tensor, settings: Any, frames: int) -> torch.Tensor:
    """``[N, frames, bands]`` log-mels of ``waves [N, samples]``, as
    ``AudioLDMDecoder.denoising_loss`` computes its targets (`nextgpt_audio.mel.log_mel`)."""
    from nextgpt_audio.mel import log_mel

    return torch.stack([log_mel(w, settings, frames) for w in waves])


# -- the vocoder ------------------------------------------------------------------------------------


def stft_loss(produced: torch.Tensor, target: torch.Tensor, sizes: tuple[int, ...] = (256, 512, 1024)) -> torch.Tensor:
    """Multi-resolution STFT magnitude loss (Yamamoto et al. 2020): spectral convergence plus
    log-magnitude L1, averaged over the FFT ``sizes`` (hop a quarter of each). It ignores phase,
    which the world reader ignores too; pitch and harmonics are what it fits."""
    total = produced.new_zeros(())
    for size in sizes:
        window = torch.hann_window(size, device=produced.device)
        produced_spectrum, target_spectrum = (
            torch.stft(x, size, hop_length=size // 4, window=window, return_complex=True).abs().clamp(min=1e-5)
            for x in (produced, target)
        )
        convergence = torch.linalg.norm(target_spectrum - produced_spectrum) / torch.linalg.norm(target_spectrum)
        total = total + convergence + F.l1_loss(produced_spectrum.log(), target_spectrum.log())
    return total / len(sizes)


def train_vocoder(
    vocoder: Any,
    mels: torch.Tensor,
    waves: torch.Tensor,
    budget: SoundDecoderBudget,
    generator: torch.Generator,
) -> dict[str, float]:
    """Train ``vocoder`` (in place) to turn random crops of ``mels [N, T, bands]`` into the
    matching samples of ``waves [N, T * hop]``; its input normalisation is first set to the
    per-band mean and spread of ``mels``. Returns the loss on a fixed batch before and after."""
    hop = waves.shape[1] // mels.shape[1]
    crop = min(budget.vocoder_frames, mels.shape[1])
    with torch.no_grad():
        vocoder.mean.copy_(mels.mean((0, 1)))
        vocoder.scale.copy_(mels.std((0, 1)).clamp(min=1e-3))
    check = torch.arange(0, len(mels), max(1, len(mels) // 8))

    def held_loss() -> float:
        with torch.no_grad():
            return float(stft_loss(vocoder(mels[check]), waves[check]))

    before = held_loss()
    vocoder.requires_grad_(True)
    vocoder.train()
    optimizer = torch.optim.AdamW(vocoder.parameters(), lr=budget.vocoder_lr, betas=(0.8, 0.99), weight_decay=0.0)
    schedule = warmup_cosine(optimizer, budget.vocoder_steps)
    progress = bar(total=budget.vocoder_steps, desc="toy audio vocoder", unit="step")
    for _ in range(budget.vocoder_steps):
        index = torch.randint(0, len(mels), (budget.vocoder_batch,), generator=generator)
        start = int(torch.randint(0, mels.shape[1] - crop + 1, (1,), generator=generator))
        produced = vocoder(mels[index, start : start + crop])
        loss = stft_loss(produced, waves[index, start * hop : (start + crop) * hop])
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
    return {"before": before, "after": held_loss()}


# -- the VAE ----------------------------------------------------------------------------------------


def train_mel_vae(
    vae: Any, mels: torch.Tensor, budget: SoundDecoderBudget, generator: torch.Generator
) -> dict[str, float]:
    """Autoencoder training of ``vae`` (in place) on log-mels ``[N, 1, T, bands]``
    (reconstruction MSE plus a small KL term), then its ``scaling_factor`` set so that its
    latents of ``mels`` have unit variance. Returns the MSE on a fixed batch before and after."""
    check = mels[torch.arange(0, len(mels), max(1, len(mels) // 16))]

    def held_mse() -> float:
        with torch.no_grad():
            return float(F.mse_loss(vae.decode(vae.encode(check).latent_dist.mode()).sample, check))

    before = held_mse()
    vae.requires_grad_(True)
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=budget.lr, weight_decay=0.0)
    schedule = warmup_cosine(optimizer, budget.vae_steps)
    progress = bar(total=budget.vae_steps, desc="toy audio VAE", unit="step")
    for _ in range(budget.vae_steps):
        x = mels[torch.randint(0, len(mels), (budget.vae_batch,), generator=generator)]
        posterior = vae.encode(x).latent_dist
        mse = F.mse_loss(vae.decode(posterior.sample(generator)).sample, x)
        loss = mse + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        progress.update(1)
        progress.set_postfix(mse=f"{mse.item():.4f}", refresh=False)
    progress.close()
    vae.eval()
    vae.requires_grad_(False)
    scale = set_latent_scale(vae, mels)
    return {"before": before, "after": held_mse(), "latent_scale": scale}


# -- the UNet ---------------------------------------------------------------------------------------


def train_sound_unet(
    decoder: Any,
    captions: list[str],
    latents: torch.Tensor,
    budget: SoundDecoderBudget,
    seed: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """Train ``decoder``'s UNet (in place) with the toolkit's denoising loss on ``latents``
    conditioned on the CLAP embeddings of their ``captions``, a ``unconditional_fraction`` of
    them on the unconditional embedding (for classifier-free guidance). Returns the loss on a
    fixed batch (fixed noise and timesteps) before and after."""
    unique = sorted(set(captions))
    row = {caption: i for i, caption in enumerate(unique)}
    negative = decoder.negative_condition()
    embedded = Condition.cat([decoder.condition_from_text(unique), negative.to(dtype=torch.float32)])
    rows = torch.tensor([row[c] for c in captions])
    check = torch.arange(0, len(captions), max(1, len(captions) // 32))

    def held_loss() -> float:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            return float(decoder._noise_prediction_loss(embedded.select(rows[check].tolist()), latents[check], None))

    before = held_loss()
    fit_denoiser(
        decoder,
        embedded,
        rows,
        latents,
        steps=budget.unet_steps,
        batch=budget.batch,
        lr=budget.lr,
        unconditional_fraction=budget.unconditional_fraction,
        generator=generator,
        desc="toy audio UNet",
    )
    return {"before": before, "after": held_loss()}


# -- all of it --------------------------------------------------------------------------------------


SOUND_PARTS = ("vocoder", "vae", "unet")
"""The trained parts of the toy AudioLDM. The vocoder reads mels, never captions or latents, so
it can train apart from the other two (the full build trains it in its second process)."""


def train_sound_decoder(
    decoder: Any,
    concepts: Sequence[W.Concept],
    budget: SoundDecoderBudget,
    seed: int,
    log: Callable[[str], None] = print,
    parts: Sequence[str] = SOUND_PARTS,
) -> dict[str, Any]:
    """Train the vocoder, VAE and UNet of ``decoder``'s AudioLDM pipeline (in place; those of
    them in ``parts``) to make the sounds of ``concepts``, and with the UNet swap its scheduler
    for the zero-terminal-SNR v-prediction DDIM. The pipeline's CLAP text encoder should already
    tell the captions apart (`toy_decoders.pretrain_clap_text`). Deterministic for a given
    ``seed`` and ``parts``; the caller's random state is left as it was. Returns the steps, the
    losses on fixed batches before and after each part, and the seconds each part took."""
    unknown = sorted(set(parts) - set(SOUND_PARTS))
    if unknown:
        raise ValueError(f"unknown sound decoder parts {unknown}; the parts are {list(SOUND_PARTS)}")
    from nextgpt_audio.mel import normalise_waveform

    pipeline = decoder.pipeline
    settings = decoder.mel_settings()
    frames = round(W.AUDIO_SECONDS * settings.sample_rate / settings.hop)
    captions, waves = render_sounds(concepts, budget.items_per_caption, seed)
    mels = sound_mels(waves, settings, frames)
    # the vocoder's target: the waveform as log_mel saw it (loudness-normalised, cut to the frames)
    targets = torch.stack([normalise_waveform(w)[: frames * settings.hop] for w in waves])
    report: dict[str, Any] = {"items": len(captions), "budget": asdict(budget)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        if "vocoder" in parts:
            started = time.perf_counter()
            report["vocoder"] = train_vocoder(pipeline.vocoder, mels, targets, budget, generator)
            report["vocoder"]["seconds"] = time.perf_counter() - started
            log(f"toy audio vocoder: {_losses(report['vocoder'])}")
        if "vae" in parts:
            started = time.perf_counter()
            report["vae"] = train_mel_vae(pipeline.vae, mels[:, None], budget, generator)
            report["vae"]["seconds"] = time.perf_counter() - started
            log(f"toy audio VAE: {_losses(report['vae'])}")
        if "unet" in parts:
            started = time.perf_counter()
            pipeline.scheduler = zero_snr_scheduler(pipeline.scheduler)
            latents = torch.cat([decoder._vae_latents(mels[i : i + 64, None]) for i in range(0, len(mels), 64)])
            report["unet"] = train_sound_unet(decoder, captions, latents, budget, seed, generator)
            report["unet"]["seconds"] = time.perf_counter() - started
            log(f"toy audio UNet: {_losses(report['unet'])}")
    return report


def _losses(part: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4g}" for name, value in part.items())


# -- the measurement --------------------------------------------------------------------------------


def read_sounds(waves: Sequence[Any], concepts: Sequence[W.Concept], sample_rate: int) -> dict[str, float]:
    """The world reader's accuracy on ``waves`` (one per concept), per attribute and ``all``."""
    from toy_world.reader import accuracy, read_audio, score

    scores = [score(read_audio(np.asarray(w), sample_rate), c) for w, c in zip(waves, concepts, strict=True)]
    return accuracy(scores)


def sound_ceiling(decoder: Any, concepts: Sequence[W.Concept], options: Sequence[Any]) -> dict[str, Any]:
    """For each of ``options`` (`nextgpt.config.DecodeOptions`), the share of ``concepts`` whose
    sound, generated from the decoder's own embedding of the caption, the world reader reads
    right (``all``: every attribute; and per attribute), with the seconds per sound. This is the
    best any model feeding the decoder conditions can do: its ceiling."""
    out: dict[str, Any] = {}
    conditions = decoder.condition_from_text([c.caption for c in concepts])
    for option in options:
        started = time.perf_counter()
        clips = [decoder.generate(conditions.select([i]), option)[0] for i in range(len(concepts))]
        seconds = (time.perf_counter() - started) / len(concepts)
        rate = clips[0].sample_rate
        accuracy = read_sounds([clip.waveform for clip in clips], concepts, rate)
        key = f"steps={option.steps},guidance={option.guidance}"
        out[key] = {**{k: round(v, 3) for k, v in accuracy.items()}, "seconds_per_sound": round(seconds, 3)}
    return out
