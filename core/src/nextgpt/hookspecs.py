"""The plugin hooks. A plugin implements any of them with ``@nextgpt.hookimpl``.

Each hook receives a ``register`` callback; call it once per thing the plugin provides::

    import nextgpt

    @nextgpt.hookimpl
    def register_modalities(register):
        register(ModalitySpec(name="3d", ...))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # annotations only: listing hooks or versions must not import torch
    from collections.abc import Callable

    from nextgpt.interfaces import DecoderBackend, EncoderBackend, MetricBackend, ModalitySpec

PROJECT = "nextgpt"
"""The pluggy project name and the entry-point group plugins are discovered through."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_modalities(register: Callable[[ModalitySpec], None]) -> None:
    """Add modalities: ``register(ModalitySpec(...))``."""


@hookspec
def register_encoders(register: Callable[[EncoderBackend], None]) -> None:
    """Add encoder backends for any modality: ``register(EncoderBackend(...))``."""


@hookspec
def register_decoders(register: Callable[[DecoderBackend], None]) -> None:
    """Add decoder backends for any modality: ``register(DecoderBackend(...))``.

    A plugin may add a second decoder for a modality another plugin provides; a config then
    chooses it by name (``modalities.image.decoder.backend``).
    """


@hookspec
def register_metrics(register: Callable[[MetricBackend], None]) -> None:
    """Add quality metrics for generated media of a modality: ``register(MetricBackend(...))``.

    `nextgpt eval` computes every registered metric of the modality it evaluates.
    """
