"""nextgpt: an any-to-any multimodal LLM toolkit after NExT-GPT, with modalities as plugins.

The front door::

    from nextgpt import NextGPTModel

    model = NextGPTModel.from_pretrained("tiny")
    answer = model.generate([{"role": "user", "content": "Draw a cat."}], request=["image"])

Every name in ``__all__`` is importable from here. They are imported on first use (PEP 562), so
``import nextgpt`` itself loads neither torch nor a plugin and ``nextgpt --version`` stays quick.
Training lives in `nextgpt.training` (the ``train`` extra): ``from nextgpt.training import
NextGPTLightningModule, NextGPTDataModule``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # the model and what it returns
    "NextGPTModel": "nextgpt.model",
    "GenerationOutput": "nextgpt.generation",
    "GeneratedMedia": "nextgpt.generation",
    "FeatureSource": "nextgpt.encoding",
    # configuration
    "NextGPTConfig": "nextgpt.config",
    "ModalityConfig": "nextgpt.config",
    "DecoderSettings": "nextgpt.config",
    "DecodeOptions": "nextgpt.config",
    # what a plugin implements and registers
    "hookimpl": "nextgpt.hookspecs",
    "ModalitySpec": "nextgpt.interfaces",
    "SignalTokenSpec": "nextgpt.interfaces",
    "Encoder": "nextgpt.interfaces",
    "EncoderBackend": "nextgpt.interfaces",
    "EncoderPlan": "nextgpt.interfaces",
    "Decoder": "nextgpt.interfaces",
    "DecoderBackend": "nextgpt.interfaces",
    "MetricBackend": "nextgpt.interfaces",
    "InputProjector": "nextgpt.interfaces",
    "OutputProjector": "nextgpt.interfaces",
    "Licence": "nextgpt.interfaces",
    "Condition": "nextgpt.conditions",
    "ConditionPart": "nextgpt.conditions",
    "ConditionSpec": "nextgpt.conditions",
    # the installed plugins
    "PluginRegistry": "nextgpt.plugins",
    "default_registry": "nextgpt.plugins",
    "load_plugins": "nextgpt.plugins",
    # errors
    "NextGPTError": "nextgpt.errors",
    "ConfigError": "nextgpt.errors",
    "MediaError": "nextgpt.errors",
    "PluginConflictError": "nextgpt.errors",
    "PluginLoadError": "nextgpt.errors",
    "UnknownModalityError": "nextgpt.errors",
}
"""Public name -> the module that defines it."""

__all__ = [
    "Condition",
    "ConditionPart",
    "ConditionSpec",
    "ConfigError",
    "DecodeOptions",
    "Decoder",
    "DecoderBackend",
    "DecoderSettings",
    "Encoder",
    "EncoderBackend",
    "EncoderPlan",
    "FeatureSource",
    "GeneratedMedia",
    "GenerationOutput",
    "InputProjector",
    "Licence",
    "MediaError",
    "MetricBackend",
    "ModalityConfig",
    "ModalitySpec",
    "NextGPTConfig",
    "NextGPTError",
    "NextGPTModel",
    "OutputProjector",
    "PluginConflictError",
    "PluginLoadError",
    "PluginRegistry",
    "SignalTokenSpec",
    "UnknownModalityError",
    "default_registry",
    "hookimpl",
    "load_plugins",
]


def __getattr__(name: str) -> Any:
    """Import a public name, or a submodule (``nextgpt.errors``), on first use."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, "__version__"})


if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports these
    from nextgpt.conditions import Condition, ConditionPart, ConditionSpec
    from nextgpt.config import DecodeOptions, DecoderSettings, ModalityConfig, NextGPTConfig
    from nextgpt.encoding import FeatureSource
    from nextgpt.errors import (
        ConfigError,
        MediaError,
        NextGPTError,
        PluginConflictError,
        PluginLoadError,
        UnknownModalityError,
    )
    from nextgpt.generation import GeneratedMedia, GenerationOutput
    from nextgpt.hookspecs import hookimpl
    from nextgpt.interfaces import (
        Decoder,
        DecoderBackend,
        Encoder,
        EncoderBackend,
        EncoderPlan,
        InputProjector,
        Licence,
        MetricBackend,
        ModalitySpec,
        OutputProjector,
        SignalTokenSpec,
    )
    from nextgpt.model import NextGPTModel
    from nextgpt.plugins import PluginRegistry, default_registry, load_plugins
