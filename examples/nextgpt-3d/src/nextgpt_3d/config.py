"""Defaults of the 3d modality: a PointNet encoder in, OpenAI's Shap-E (text-conditioned) out."""

from __future__ import annotations

from nextgpt.config import DecodeOptions, DecoderSettings, EncoderSettings, ModalityConfig
from pydantic import Field

SHAP_E = "openai/shap-e"
"""The hub id of the text-to-3D Shap-E pipeline (diffusers format)."""


class ThreeDConfig(ModalityConfig):
    """Settings of the ``3d`` modality.

    The encoder source defaults to ``"tiny"`` because no PointNet weights are released in this
    format; point ``encoder.source`` at a folder written by
    `nextgpt_3d.encoder.PointNet.save_pretrained` to use trained ones. The decoder is Shap-E
    with its published sampling settings (64 Karras-Heun steps, guidance 15).
    """

    encoder: EncoderSettings = Field(default_factory=lambda: EncoderSettings(backend="pointnet", source="tiny"))
    decoder: DecoderSettings | None = Field(default_factory=lambda: DecoderSettings(backend="shap-e", source=SHAP_E))
    decode: DecodeOptions = Field(default_factory=lambda: DecodeOptions(steps=64, guidance=15.0, seed=13))
