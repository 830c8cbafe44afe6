"""Defaults of the video modality: ImageBind in, zeroscope_v2_576w out (77 x 1024 condition)."""

from __future__ import annotations

from nextgpt.config import DecodeOptions, DecoderSettings, EncoderSettings, ModalityConfig
from pydantic import Field

ZEROSCOPE_576W = "cerspense/zeroscope_v2_576w"


class VideoConfig(ModalityConfig):
    encoder: EncoderSettings = Field(
        default_factory=lambda: EncoderSettings(backend="imagebind", source="imagebind_huge")
    )
    decoder: DecoderSettings | None = Field(
        default_factory=lambda: DecoderSettings(backend="zeroscope", source=ZEROSCOPE_576W)
    )
    decode: DecodeOptions = Field(
        default_factory=lambda: DecodeOptions(steps=50, guidance=7.5, height=320, width=576, num_frames=24, seed=13)
    )
    loss_weight: float = 2.0
