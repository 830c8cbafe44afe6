"""What training checks, so that a run fails early and says why: the settings before anything
is built, records longer than ``max_length``, and finite losses and weights after every step."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from nextgpt.data.dataset import SampleBatch
from nextgpt.errors import ConfigError, NextGPTError, NextGPTWarning


class NonFiniteTrainingError(NextGPTError, FloatingPointError):
    """The loss, or a trained weight after an optimizer step, is NaN or infinite; the message
    names the batch's records (``file:index``)."""


def check_settings(**settings: tuple[Any, bool, str]) -> None:
    """Raise `ConfigError` for the first ``name=(value, ok, expected)`` that is not ok, before
    anything is built."""
    for name, (value, ok, expected) in settings.items():
        if not ok:
            raise ConfigError(f"model.{name}: expected {expected}, got {value!r}")


def warn_truncated(batch: SampleBatch, packed: Sequence[Any], limit: int, said: set[str]) -> None:
    """Say (once per record: ``said`` keeps those already named) which samples are longer than
    ``limit`` positions and lose their end."""
    long = {
        s.source: int(p.input_ids.shape[0])
        for s, p in zip(batch.samples, packed, strict=True)
        if p.input_ids.shape[0] > limit and s.source not in said
    }
    if long:
        said.update(long)
        shown = [f"{source} ({length})" for source, length in long.items()]
        warnings.warn(
            f"{len(long)} record(s) longer than model.max_length={limit} positions are cut at the end, where "
            f"the answer is: {', '.join(shown[:5])}{' ...' if len(shown) > 5 else ''}",
            NextGPTWarning,
            stacklevel=3,
        )


def non_finite_parameters(model: Any) -> list[str]:
    """Names of the trained parameters of ``model`` holding NaN or infinite values.

    Checked after every optimizer step, so the common case is one fused norm over all of them
    (finite unless some value is NaN or infinite, or so large that the norm overflows); only then
    is each parameter looked at."""
    if model is None:
        return []
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        return []
    with torch.no_grad():
        if bool(torch.isfinite(torch.nn.utils.get_total_norm([p.detach() for _, p in named]))):
            return []
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).tolist()
    return [name for (name, _), ok in zip(named, finite, strict=True) if not ok]
