"""Decoder code shared by the plugins: `DiffusersDecoder`, the base of each diffusers decoder, and
`CLIPTextDecoder`, its variant for pipelines conditioned on one CLIP text encoder."""

from nextgpt.decoders.clip_text import CLIPTextDecoder
from nextgpt.decoders.diffusers_base import (
    TINY,
    DiffusersDecoder,
    ddim_scheduler,
    materialise_tiny,
    parse_dtype,
    quiet_diffusers,
)

__all__ = [
    "TINY",
    "CLIPTextDecoder",
    "DiffusersDecoder",
    "ddim_scheduler",
    "materialise_tiny",
    "parse_dtype",
    "quiet_diffusers",
]
