"""Decoder code shared by the plugins: `DiffusersDecoder`, the base of each diffusers decoder."""

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
    "DiffusersDecoder",
    "ddim_scheduler",
    "materialise_tiny",
    "parse_dtype",
    "quiet_diffusers",
]
