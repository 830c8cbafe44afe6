"""Defaults of the audio modality: ImageBind in, AudioLDM-l-full out (1 x 512 CLAP condition)."""

from __future__ import annotations

from nextgpt.config import DecodeOptions, DecoderSettings, EncoderSettings, ModalityConfig
from pydantic import Field

AUDIOLDM_L_FULL = "cvssp/audioldm-l-full"


class AudioConfig(ModalityConfig):
    encoder: EncoderSettings = Field(
        default_factory=lambda: EncoderSettings(backend="imagebind", source="imagebind_huge")
    )
    decoder: DecoderSettings | None = Field(
        default_factory=lambda: DecoderSettings(backend="audioldm", source=AUDIOLDM_L_FULL)
    )
    decode: DecodeOptions = Field(default_factory=lambda: DecodeOptions(steps=50, guidance=7.5, seconds=9.0, seed=13))
