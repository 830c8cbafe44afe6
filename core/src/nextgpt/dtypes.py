"""Floating-point types by name: the one map from the names configs and options use
(``"float16"``, `nextgpt.config.DtypeName`) to torch's types, for the LLM, the decoders and the
legacy converter alike."""

from __future__ import annotations

from typing import get_args

import torch

from nextgpt.config import DtypeName
from nextgpt.errors import ConfigError

DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in get_args(DtypeName)}
"""``"float32"`` -> ``torch.float32``, and so on for every `DtypeName`."""


def parse_dtype(dtype: torch.dtype | str | None, where: str = "dtype") -> torch.dtype | None:
    """``torch.float16``, ``"float16"`` or ``"torch.float16"`` -> ``torch.float16``; ``None`` stays
    ``None``. Anything else is a `ConfigError` naming ``where`` and the known names."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ConfigError(f"{where}: expected one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str | None:
    """The name of ``dtype`` in `DTYPES` (None for a type configs cannot name)."""
    return next((name for name, value in DTYPES.items() if value == dtype), None)
