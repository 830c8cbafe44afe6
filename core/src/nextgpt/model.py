"""`NextGPTModel`: NExT-GPT's system assembled from a config and the installed plugins.

Frozen encoders, input projectors, an LLM with signal tokens (and LoRA), output projectors and
frozen decoders. This module builds those parts and loads and saves whole models
(`from_pretrained`, `save_pretrained`); each other job of the model has a module of its own,
mixed into the class:

==========================  ===========================================================
`nextgpt.encoding`          media in: the one encoding path, `encode_media`, and feature sources
`nextgpt.packing`           the prompt: template, media spliced at placeholders, fitting the context
`nextgpt.signals`           signal tokens out: their LLM states as decoder conditions
`nextgpt.generation`        `generate`: one assistant turn of text and media
`nextgpt.decoding`          the LLM's decoding, batched, keeping the signal tokens' states
`nextgpt.trainable`         what trains: trainable groups, the trainable state dict
`nextgpt.model_folder`      the saved folder's format (config.json, model.safetensors)
==========================  ===========================================================

The model never branches on a modality's name: every modality reaches it through its
`ModalitySpec`, its encoder and its decoder.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nextgpt.config import DecoderSettings, ModalityConfig, NextGPTConfig, validate_model
from nextgpt.dtypes import parse_dtype
from nextgpt.encoding import FeatureSource, MediaEncodingMixin
from nextgpt.errors import ConfigError, SkippedModalityWarning
from nextgpt.generation import GeneratedMedia, GenerationMixin, GenerationOutput
from nextgpt.interfaces import Decoder, Encoder, ModalitySpec
from nextgpt.licence_policy import check_licence_policy, planned_licences
from nextgpt.licences import Licence
from nextgpt.llm import add_signal_tokens, apply_lora, base_model, load_llm, prepare_for_quantized_training
from nextgpt.model_folder import ModelFolder, read_model_folder, write_pretrained
from nextgpt.overrides import Overrides, changed_decoders
from nextgpt.packing import PackedInput, PromptPackingMixin
from nextgpt.placement import resolve_device
from nextgpt.plugins import PluginRegistry, default_registry
from nextgpt.projectors import build_input_projector, build_output_projector
from nextgpt.shared import SharedModels
from nextgpt.signals import SignalConditionsMixin
from nextgpt.suggest import hint, listing
from nextgpt.templates import build_template
from nextgpt.trainable import TrainableStateMixin

__all__ = [
    "GeneratedMedia",
    "GenerationOutput",
    "NextGPTModel",
    "PackedInput",
    "SkippedModalityWarning",
    "planned_modalities",
    "with_decoders",
]


class NextGPTModel(
    MediaEncodingMixin,
    PromptPackingMixin,
    SignalConditionsMixin,
    GenerationMixin,
    TrainableStateMixin,
    nn.Module,
):
    """NExT-GPT's system, built from a `NextGPTConfig` and the installed plugins.

    Args:
        config: the system configuration (see `nextgpt.presets` for ready-made ones).
        registry: the plugins to draw modalities from (default: the installed ones).
        inactive: modalities of ``config`` to leave out, with their signal tokens (what
            `from_pretrained` does for a folder's modalities that no installed plugin
            provides): their tokens keep their place in the vocabulary and their trained
            tensors are kept and saved again, but they are neither read nor generated.
        device: where every part goes (`nextgpt.placement.resolve_device` names: ``"auto"``,
            ``"cpu"``, ``"cuda:1"``...; default: the CPU). The LLM loads straight onto it;
            decoders load there when first used.
        torch_dtype: the dtype of the frozen parts (LLM, encoders, decoders) instead of
            ``llm.dtype``; the trained parts (projectors, LoRA) keep float32.

    Placement follows ``model.to(...)`` (and ``.cuda()``, ``.half()``, Lightning's moves): the
    decoders, which are not sub-modules (each holds a diffusers pipeline, loaded lazily), move
    with the rest, or load onto the new device when first used.
    """

    def __init__(
        self,
        config: NextGPTConfig,
        registry: PluginRegistry | None = None,
        *,
        inactive: Mapping[str, Sequence[str]] | None = None,
        device: torch.device | str | None = None,
        torch_dtype: torch.dtype | str | None = None,
    ) -> None:
        super().__init__()
        target = resolve_device(device, "device") or torch.device("cpu")
        frozen_dtype = parse_dtype(torch_dtype, "torch_dtype")
        placement = torch.empty(0, device=target, dtype=frozen_dtype or torch.float32)
        self.register_buffer("_placement", placement, persistent=False)
        """An empty tensor that every move of the model moves (its dtype: the frozen parts'):
        `_apply` reads where it went and moves the decoders there."""
        self.config = config
        self.feature_source: FeatureSource | None = None
        """Asked for media features before the encoders run (`nextgpt.encoding`)."""
        self.registry = registry or default_registry()
        self.specs: dict[str, ModalitySpec] = {}
        self.modality_configs: dict[str, ModalityConfig] = {}
        inactive = dict(inactive or {})
        self.inactive_state: dict[str, torch.Tensor] = {}
        """Trained tensors of the inactive modalities, kept as loaded."""
        for name, raw in config.modalities.items():
            if name in inactive:
                continue
            spec = self.registry.modality(name)
            cfg = spec.validate_config(raw)
            if cfg.signal_tokens is not None:
                spec = spec.model_copy(update={"signal_tokens": spec.signal_tokens.with_count(cfg.signal_tokens)})
            self.specs[name], self.modality_configs[name] = spec, cfg
        check_licence_policy(config, self.registry, self.modality_configs)  # before any weight loads

        llm, self.tokenizer = load_llm(config.llm, target, frozen_dtype)
        if config.llm.quantization is not None and config.llm.lora:
            llm = prepare_for_quantized_training(llm)
        self.template = build_template(
            config.llm, self.tokenizer, [spec.signal_tokens.placeholder for spec in self.specs.values()]
        )
        self.base_vocab_size = int(llm.get_input_embeddings().weight.shape[0])
        self.wrap_ids: list[int] = (
            add_signal_tokens(llm, self.tokenizer, list(config.llm.media_wrap)) if config.llm.media_wrap else []
        )
        self.signal_ids: dict[str, list[int]] = {}
        self.inactive_ids: dict[str, list[int]] = {}
        for name in config.modalities:  # the vocabulary follows the config's order, inactive included
            if name in inactive:
                self.inactive_ids[name] = add_signal_tokens(llm, self.tokenizer, list(inactive[name]))
            else:
                self.signal_ids[name] = add_signal_tokens(llm, self.tokenizer, self.specs[name].signal_tokens.tokens)
        with torch.random.fork_rng(devices=[]):  # LoRA's initialisation follows config.seed
            torch.manual_seed(config.seed)
            self.llm = apply_lora(llm, config.llm) if config.llm.lora else llm
        self.d_llm = int(base_model(self.llm).config.hidden_size)

        shared = SharedModels()
        self.encoders = nn.ModuleDict()
        self.decoders: dict[str, Decoder] = {}
        self.input_projectors = nn.ModuleDict()
        self.output_projectors = nn.ModuleDict()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            for name, cfg in self.modality_configs.items():
                encoder = self._build_encoder(name, cfg, shared)
                self.encoders[name] = encoder
                self.input_projectors[name] = build_input_projector(cfg.input_projector, encoder.dim, self.d_llm)
                if cfg.decoder is not None:
                    backend = self.registry.decoder_backend(name, cfg.decoder.backend)
                    decoder = backend.build(cfg.decoder.source, **cfg.decoder.options)
                    self.decoders[name] = decoder.to(target, frozen_dtype)  # loads there when first used
                    self.output_projectors[name] = build_output_projector(
                        cfg.output_projector, self.d_llm, self.specs[name].signal_tokens.count, decoder.condition_spec
                    )
        if frozen_dtype is not None:
            self.encoders.to(frozen_dtype)
        if target.type != "cpu":
            for part in (self.encoders, self.input_projectors, self.output_projectors):
                part.to(target)
            if not _is_quantized(self.llm):  # bitsandbytes keeps its weights where it quantised them
                self.llm.to(target)  # parts added after loading (LoRA, signal rows) follow

    def _apply(self, fn: Any, recurse: bool = True) -> NextGPTModel:
        """`nn.Module._apply` (what ``to``, ``cuda``, ``half``... call), then the decoders follow
        where the `_placement` buffer went: its device, and its dtype when that changed."""
        before = self._placement.dtype
        super()._apply(fn, recurse)
        after = self._placement
        for decoder in getattr(self, "decoders", {}).values():
            decoder.to(after.device, after.dtype if after.dtype != before else None)
        return self

    def _build_encoder(self, name: str, cfg: ModalityConfig, shared: SharedModels) -> Encoder:
        backend = self.registry.encoder_backend(name, cfg.encoder.backend)
        encoder = backend.build(cfg.encoder.source, shared, **cfg.encoder.options)
        for param in encoder.parameters():
            param.requires_grad_(False)
        return encoder.eval()

    # -- properties -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the LLM is (read from a stored parameter: with signal rows attached the
        embedding's ``weight`` is computed on every access)."""
        return next(self.llm.parameters()).device

    @property
    def new_token_ids(self) -> list[int]:
        """Ids added to the LLM's vocabulary: media-wrap tokens, then the signal tokens (those
        of inactive modalities included), in the config's order."""
        ids = self.all_signal_ids
        return [*self.wrap_ids, *(i for name in self.config.modalities for i in ids[name])]

    @property
    def all_signal_ids(self) -> dict[str, list[int]]:
        """Signal-token ids of every modality of the config, inactive ones included."""
        return {name: (self.signal_ids.get(name) or self.inactive_ids[name]) for name in self.config.modalities}

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(ids.to(self.device))

    # -- loading and saving ----------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` (naming the frozen components) and ``model.safetensors`` (only
        the trained parts) into ``directory``."""
        tokens = {name: spec.signal_tokens.tokens for name, spec in self.specs.items()}
        tokens.update({name: self.tokenizer.convert_ids_to_tokens(ids) for name, ids in self.inactive_ids.items()})
        return write_pretrained(
            directory,
            self.config,
            {name: tokens[name] for name in self.config.modalities},
            self.all_signal_ids,
            self.trainable_state_dict(),
            {label: licence.model_dump(mode="json") for label, licence in self.licences().items()},
        )

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        registry: PluginRegistry | None = None,
        modalities: Sequence[str] | None = None,
        decoders: Mapping[str, DecoderSettings | Mapping[str, Any]] | None = None,
        overrides: Overrides | Mapping[str, Any] | Sequence[str] | None = None,
        *,
        device: torch.device | str | None = None,
        torch_dtype: torch.dtype | str | None = None,
    ) -> NextGPTModel:
        """Build a model from a preset name (``tiny``, ``nextgpt-7b-v0``), a local folder written by
        `save_pretrained`, a named model (a folder in `nextgpt.paths.models_dir`, e.g. ``toy``
        once ``examples/toy_world/build_toy.py`` has built it), or a hub repository id holding
        such a folder.

        A folder's modality that no installed plugin provides does not stop the others: it is
        left out with a `SkippedModalityWarning` naming it (its trained tensors are kept, and
        saved again by `save_pretrained`).

        Args:
            name_or_path: the preset, folder, named model or hub id.
            registry: the plugins to draw modalities from (default: the installed ones).
            modalities: the modalities to enable. With a preset: any installed ones (default:
                all). With a folder: some of the folder's (default: all whose plugin is
                installed); the others are left out as an uninstalled one is, without a warning
                (their trained tensors are kept and saved again). A name the folder lacks is a
                `ConfigError`.
            decoders: start with other decoders: per modality, the `DecoderSettings` (``backend``,
                ``source``, ``options``) to use instead of those the preset or folder names, e.g.
                ``{"image": {"backend": "pixart-sigma", "source": "tiny"}}``. A folder's output
                projector for such a modality keeps its trained weights where the new decoder's
                condition has the same shapes; otherwise it starts from a fresh initialisation
                (train it again with stage 2), and a warning names it.
            overrides: settings laid over the preset's or folder's configuration, as
                `nextgpt.overrides` says: a mapping (dotted keys allowed, e.g.
                ``{"llm.max_new_tokens": 64}``) or ``KEY=VALUE`` strings (what ``--set`` takes).
                Over a folder only `nextgpt.overrides.FOLDER_SETTINGS` may change; a decoder
                changed there is handled as with ``decoders``.
            device: where the model runs (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``; default
                the CPU): the LLM loads straight onto it in its dtype, encoders and projectors
                are moved there, decoders load there when first used. An unknown name or an
                absent GPU is a `ConfigError` raised before anything loads.
            torch_dtype: the frozen parts' dtype instead of the configuration's ``llm.dtype``
                (``"bfloat16"``, ``torch.float16``...); trained parts stay float32.
        """
        from nextgpt.presets import PRESETS, preset_config

        device = resolve_device(device, "device")
        torch_dtype = parse_dtype(torch_dtype, "torch_dtype")
        placement = {"device": device, "torch_dtype": torch_dtype}

        registry = registry or default_registry()
        overrides = Overrides.of(overrides)
        if str(name_or_path) in PRESETS:
            config = preset_config(str(name_or_path), registry, modalities)
            config = overrides.apply(config, registry, f"preset {name_or_path}")
            return cls(with_decoders(config, decoders, f"preset {name_or_path}"), registry, **placement)
        folder = read_model_folder(name_or_path)
        config = overrides.apply(folder.config, registry, str(folder.config_path), folder=True)
        weights = folder.load_weights()  # checked against its checksum before anything is built
        if modalities is None:
            inactive = _uninstalled_modalities(folder, registry)
        else:
            inactive = _deselected_modalities(folder, registry, modalities)
        left_out = [name for name in decoders or {} if name in inactive]
        if left_out:
            raise ConfigError(
                f"decoders.{left_out[0]}: modality {left_out[0]!r} is left out of this model "
                f"(enabled: {listing([m for m in folder.config.modalities if m not in inactive])})"
            )
        model = cls(with_decoders(config, decoders, str(folder.config_path)), registry, inactive=inactive, **placement)
        if folder.signal_token_ids and folder.signal_token_ids != model.all_signal_ids:
            raise ConfigError(
                f"{folder.config_path}: signal token ids {folder.signal_token_ids} differ from the rebuilt "
                f"tokenizer's {model.all_signal_ids}"
            )
        for name in dict.fromkeys([*changed_decoders(folder.config, config, registry), *(decoders or {})]):
            weights = model._fresh_projector_if_reshaped(weights, name, folder.config, str(folder.directory))
        model.load_trainable_state_dict(weights, source=str(folder.weights_path))
        return model

    def licences(self) -> dict[str, Licence]:
        """The licence of every frozen component (the LLM, each encoder and decoder), keyed by
        its role and name, e.g. ``"image decoder (flux)"``: each says ``commercial`` (yes /
        restricted / no), its restriction (``note``) and where the fact comes from (``source``)."""
        components = planned_licences(self.config, self.registry, self.modality_configs)
        return {component.label: component.licence for component in components}


def _is_quantized(llm: nn.Module) -> bool:
    """Whether transformers loaded the LLM quantised (it must not be moved afterwards)."""
    return bool(getattr(base_model(llm), "is_quantized", False))


def with_decoders(
    config: NextGPTConfig, decoders: Mapping[str, DecoderSettings | Mapping[str, Any]] | None, where: str
) -> NextGPTConfig:
    """``config`` with the decoder settings of some modalities replaced (validated, each must be a
    modality of the config); the rest of each modality's settings is kept."""
    if not decoders:
        return config
    modalities = {name: dict(raw) for name, raw in config.modalities.items()}
    for name, settings in decoders.items():
        if name not in modalities:
            raise ConfigError(f"decoders.{name}: {where} has no modality {name!r} (it has {sorted(modalities)})")
        if not isinstance(settings, DecoderSettings):
            settings = validate_model(DecoderSettings, dict(settings), f"decoders.{name}")
        modalities[name]["decoder"] = settings.model_dump(mode="json")
    return config.model_copy(update={"modalities": modalities})


def planned_modalities(name_or_path: str | Path, registry: PluginRegistry | None = None) -> tuple[list[str], list[str]]:
    """The modalities that ``NextGPTModel.from_pretrained(name_or_path)`` would read and those it
    would generate, from the configuration alone: nothing is loaded, so a command can check its
    arguments in a fraction of a second (presets check their own settings too)."""
    from nextgpt.presets import PRESETS, preset_config

    registry = registry or default_registry()
    if str(name_or_path) in PRESETS:
        config = preset_config(str(name_or_path), registry)
    else:
        config = read_model_folder(name_or_path).config
    reads, generates = [], []
    for name, raw in config.modalities.items():
        if name in registry.modalities:
            reads.append(name)
            if registry.modality(name).validate_config(raw).decoder is not None:
                generates.append(name)
    return reads, generates


def _deselected_modalities(
    folder: ModelFolder, registry: PluginRegistry, chosen: Sequence[str]
) -> dict[str, list[str]]:
    """The folder's modalities that ``chosen`` leaves out, with their signal tokens. Each chosen
    one must be the folder's and have its plugin installed."""
    names = list(folder.config.modalities)
    for name in chosen:
        if name not in names:
            raise ConfigError(
                f"modalities: {folder.config_path} has no modality {name!r}{hint(name, names)} "
                f"(it has {listing(names)})"
            )
        registry.modality(name)  # raises, naming the modality and what is installed
    return {name: _signal_tokens_of(folder, registry, name) for name in names if name not in chosen}


def _signal_tokens_of(folder: ModelFolder, registry: PluginRegistry, name: str) -> list[str]:
    """The signal tokens of the folder's modality ``name``: as the folder records them, else as
    its plugin makes them for the folder's settings."""
    recorded = folder.signal_tokens.get(name)
    if recorded:
        return list(recorded)
    spec = registry.modality(name)  # raises, naming the modality and what is installed
    count = spec.validate_config(folder.config.modalities[name]).signal_tokens
    return list((spec.signal_tokens.with_count(count) if count is not None else spec.signal_tokens).tokens)


def _uninstalled_modalities(folder: ModelFolder, registry: PluginRegistry) -> dict[str, list[str]]:
    """The folder's modalities that ``registry`` lacks, with their signal tokens; warns once
    naming them. A folder that does not record a missing modality's tokens cannot rebuild its
    vocabulary without the plugin: that is the registry's unknown-modality error."""
    missing = [name for name in folder.config.modalities if name not in registry.modalities]
    if not missing:
        return {}
    for name in missing:
        if not folder.signal_tokens.get(name):
            registry.modality(name)  # raises, naming the modality and what is installed
    warnings.warn(
        f"{folder.config_path}: modality {', '.join(repr(m) for m in missing)} skipped: no installed plugin "
        f"provides it (installed: {listing(sorted(registry.modalities))}); its trained parts are kept and saved "
        "again, but it is neither read nor generated. Install its plugin to use it.",
        SkippedModalityWarning,
        stacklevel=3,
    )
    return {name: list(folder.signal_tokens[name]) for name in missing}
