"""CLAP audio encoder (laion/clap-htsat-unfused, Apache-2.0): an alternative to ImageBind that
permits commercial use.

Preprocessing is CLAP's own ``ClapFeatureExtractor`` (log-mel spectrogram, ``repeatpad`` up to
its ``max_length_s``). A sound is mixed to mono, resampled to the extractor's rate and cut to its
first ``max_length_s`` seconds before that, so the extractor's random crop of long clips never
runs and the same file always gives the same features. Features are the projected audio
embedding, one vector per sound, ``[B, 1, projection_dim]`` (512 for the released weights), as
ImageBind gives one vector per clip; an input projector sizes itself from ``dim``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from nextgpt.interfaces import Encoder

from nextgpt_audio.licences import CLAP_LICENCE
from nextgpt_audio.media import AudioClip

CLAP_HUB_ID = "laion/clap-htsat-unfused"


def tiny_clap_parts() -> tuple[Any, Any]:
    """A randomly initialised CLAP audio tower and a matching feature extractor, small enough
    for tests (built offline under a fixed seed)."""
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection, ClapFeatureExtractor

    config = ClapAudioConfig(
        spec_size=64,
        patch_size=4,
        patch_stride=(4, 4),
        num_mel_bins=16,
        hidden_size=16,  # patch_embeds_hidden_size doubled once per stage after the first
        patch_embeds_hidden_size=8,
        depths=[1, 1],
        num_attention_heads=[2, 2],
        window_size=4,
        mlp_ratio=2.0,
        projection_dim=24,
        projection_hidden_size=24,
        enable_fusion=False,
    )
    extractor = ClapFeatureExtractor(
        feature_size=16,
        sampling_rate=16000,
        max_length_s=1,
        fft_window_size=512,
        frequency_max=8000,
        hop_length=250,
        truncation="rand_trunc",
        padding="repeatpad",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ClapAudioModelWithProjection(config)
    return model, extractor


class ClapAudioEncoder(Encoder):
    """A frozen CLAP audio tower (HTSAT) with its projection, and CLAP's feature extractor."""

    def __init__(self, model: Any, extractor: Any, identity: str) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.extractor = extractor
        self.dim = int(model.config.projection_dim)
        self.licence = CLAP_LICENCE
        self.identity = identity

    @classmethod
    def from_source(cls, source: str) -> ClapAudioEncoder:
        """Build from ``"tiny"`` (random tiny weights), a local folder written by
        ``save_pretrained`` (model and feature extractor), or a hub id such as
        ``laion/clap-htsat-unfused``."""
        if source == "tiny":
            model, extractor = tiny_clap_parts()
            return cls(model, extractor, identity="clap:tiny")
        from transformers import ClapAudioModelWithProjection, ClapFeatureExtractor

        model = ClapAudioModelWithProjection.from_pretrained(source)
        extractor = ClapFeatureExtractor.from_pretrained(source)
        local = Path(source).expanduser()
        return cls(model, extractor, identity=f"clap:{local.resolve() if local.exists() else source}")

    def preprocess(self, media: AudioClip) -> torch.Tensor:
        """``[1, frames, mel bins]`` log-mel features of the clip's first ``max_length_s`` seconds."""
        import torchaudio

        signal = torch.as_tensor(np.asarray(media.waveform, dtype=np.float32)).mean(dim=0)
        signal = signal[: int(self.extractor.max_length_s * media.sample_rate)]  # cut before resampling
        rate = int(self.extractor.sampling_rate)
        if media.sample_rate != rate:
            signal = torchaudio.functional.resample(signal, orig_freq=media.sample_rate, new_freq=rate)
        signal = signal[: int(self.extractor.nb_max_samples)]
        features = self.extractor(signal.numpy(), sampling_rate=rate, return_tensors="pt")["input_features"]
        return features[0]

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        embeds = self.model(input_features=batch.to(self.model.dtype)).audio_embeds
        return embeds.unsqueeze(1)
