"""AudioLDM's mel front end: a waveform as the log-mel spectrogram its VAE was trained on.

AudioLDM (Liu et al. 2023) trains its VAE on log-mel spectrograms of 16 kHz audio: the
waveform's mean removed and its peak scaled to 0.5, the magnitude (not power) STFT with a
1024-point periodic Hann window, a centred reflect-padded frame every vocoder hop (160 samples,
10 ms), a Slaney-normalised Slaney-scale mel filter bank from 0 Hz to half the sampling rate
(64 bands), and ``log(max(x, 1e-5))``. diffusers' ``AudioLDMPipeline`` only runs the other way
(latents -> VAE -> mel -> HiFi-GAN vocoder), so training targets for the decoder's
noise-prediction loss need this module. Hop, bands and rate are read from the pipeline's
vocoder, so the tiny pipeline (8 bands, a hop of 4) gets a matching front end too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_FLOOR = 1e-5
"""AudioLDM's dynamic-range floor: ``log(clamp(mel, min=1e-5))``."""


@dataclass(frozen=True)
class MelSettings:
    """The spectrogram a vocoder reads: ``n_mels`` bands, one frame per ``hop`` samples."""

    sample_rate: int
    n_mels: int
    hop: int
    n_fft: int = 1024

    @classmethod
    def from_vocoder(cls, config: object, n_fft: int = 1024) -> MelSettings:
        """Settings matching a ``SpeechT5HifiGan`` config: its input bands, its rate and the
        product of its upsampling rates as the hop (each mel frame becomes ``hop`` samples)."""
        return cls(
            sample_rate=int(config.sampling_rate),
            n_mels=int(config.model_in_dim),
            hop=int(math.prod(config.upsample_rates)),
            n_fft=n_fft,
        )


def normalise_waveform(waveform: torch.Tensor) -> torch.Tensor:
    """AudioLDM's loudness normalisation: mean removed, peak at 0.5 (silence stays silent)."""
    centred = waveform - waveform.mean()
    return 0.5 * centred / (centred.abs().max() + 1e-8)


def log_mel(waveform: torch.Tensor, settings: MelSettings, frames: int) -> torch.Tensor:
    """``[frames, n_mels]`` log-mel spectrogram of a mono ``waveform`` ``[samples]`` at
    ``settings.sample_rate``, cut or zero-padded to ``frames * hop`` samples first."""
    import torchaudio

    length = frames * settings.hop
    audio = normalise_waveform(waveform.float())[:length]
    audio = torch.nn.functional.pad(audio, (0, length - audio.shape[-1]))
    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=settings.sample_rate,
        n_fft=settings.n_fft,
        hop_length=settings.hop,
        f_min=0.0,
        f_max=settings.sample_rate / 2,
        n_mels=settings.n_mels,
        power=1.0,
        norm="slaney",
        mel_scale="slaney",
        center=True,
        pad_mode="reflect",
    )
    mel = transform(audio)[:, :frames]  # [n_mels, frames + 1] -> the first `frames`
    return torch.log(torch.clamp(mel, min=LOG_FLOOR)).T


def to_mono(waveform: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """``[channels, samples]`` at ``sample_rate`` -> mono ``[samples]`` at ``target_rate``."""
    import torchaudio

    mono = waveform.float().mean(0) if waveform.ndim == 2 else waveform.float()
    if sample_rate != target_rate:
        mono = torchaudio.functional.resample(mono, sample_rate, target_rate)
    return mono
