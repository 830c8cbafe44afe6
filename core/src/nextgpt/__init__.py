"""nextgpt: an any-to-any multimodal LLM toolkit after NExT-GPT, with modalities as plugins."""

from nextgpt.conditions import Condition, ConditionPart, ConditionSpec
from nextgpt.config import DecodeOptions, ModalityConfig, NextGPTConfig
from nextgpt.errors import (
    ConfigError,
    MediaError,
    NextGPTError,
    PluginConflictError,
    PluginLoadError,
    UnknownModalityError,
)
from nextgpt.hookspecs import hookimpl
from nextgpt.interfaces import (
    Decoder,
    DecoderBackend,
    Encoder,
    EncoderBackend,
    InputProjector,
    Licence,
    ModalitySpec,
    OutputProjector,
    SignalTokenSpec,
)
from nextgpt.plugins import PluginRegistry, default_registry, load_plugins

__version__ = "0.1.0"

__all__ = [
    "Condition",
    "ConditionPart",
    "ConditionSpec",
    "ConfigError",
    "DecodeOptions",
    "Decoder",
    "DecoderBackend",
    "Encoder",
    "EncoderBackend",
    "InputProjector",
    "Licence",
    "MediaError",
    "ModalityConfig",
    "ModalitySpec",
    "NextGPTConfig",
    "NextGPTError",
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
