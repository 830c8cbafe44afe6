"""Defaults of the image modality: ImageBind in, Stable Diffusion 1.5 out (77 x 768 condition)."""

from __future__ import annotations

from nextgpt.config import DecodeOptions, DecoderSettings, EncoderSettings, ModalityConfig
from pydantic import Field

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


class ImageConfig(ModalityConfig):
    encoder: EncoderSettings = Field(
        default_factory=lambda: EncoderSettings(backend="imagebind", source="imagebind_huge")
    )
    decoder: DecoderSettings | None = Field(
        default_factory=lambda: DecoderSettings(backend="stable-diffusion", source=SD15)
    )
    decode: DecodeOptions = Field(
        default_factory=lambda: DecodeOptions(steps=50, guidance=7.5, height=512, width=512, seed=13)
    )
