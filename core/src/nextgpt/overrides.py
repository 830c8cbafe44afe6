"""Configuration overrides: a configuration file and ``KEY=VALUE`` settings laid over the
configuration of a preset or a model folder, checked by the same pydantic models.

The command line's ``--config FILE`` and ``--set KEY=VALUE``, ``NextGPTModel.from_pretrained(...,
overrides=...)`` and the training module's ``overrides`` all come here. The rules:

* A **file** (YAML or JSON) holds a `NextGPTConfig` or any part of one, and so does a Python
  **mapping** (whose keys may also be dotted: ``{"llm.max_new_tokens": 64}``). It is laid over the
  configuration: a mapping merges into the mapping there, key by key; any other value replaces
  what is there.
* A **setting** ``KEY=VALUE`` replaces the value at the dotted ``KEY`` (a mapping value
  included: ``modalities.image.decoder={backend: pixart-sigma, source: tiny}`` replaces the whole
  decoder entry). ``VALUE`` is read as YAML, so JSON too: ``64``, ``0.5``, ``true``, ``null``,
  ``pixart-sigma``, ``[q_proj, v_proj]``, ``{steps: 4}``.
* Layers apply in order (the file first, then each setting); each is validated as it applies,
  so an unknown key or a bad value is one line naming the layer (``--set KEY=VALUE`` or the
  file), the key, the value and the reason, with a "did you mean" for a misspelt key.
* Only the modalities the preset or folder has can be changed.
* Over a **model folder**, what its trained tensors were made for cannot change: only
  `FOLDER_SETTINGS` can (sampling, dtype, quantization, seed, the sources of the frozen LLM and encoders,
  decoding defaults, loss weights, and the decoders). A folder started with another decoder
  keeps its trained weights where they fit the new decoder's condition; `changed_decoders` names
  the modalities whose output projector `NextGPTModel.from_pretrained` then checks (and
  re-initialises, with a warning, when its shapes changed).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from nextgpt.config import NextGPTConfig
from nextgpt.errors import ConfigError, UnknownModalityError
from nextgpt.plugins import PluginRegistry
from nextgpt.suggest import hint, listing

FOLDER_SETTINGS = (
    "seed",
    "llm.source",
    "llm.dtype",
    "llm.quantization",
    "llm.max_new_tokens",
    "llm.temperature",
    "llm.top_p",
    "llm.cache",
    "modalities.<name>.encoder.source",
    "modalities.<name>.decoder",
    "modalities.<name>.decode",
    "modalities.<name>.loss_weight",
    "licence_policy",
    "llm.licence",
)
"""What an override may change over a model folder (each with everything under it): settings
its trained tensors do not depend on, the sources of its frozen LLM and encoders (the tensors are
checked against them when the folder loads), its decoders, the licence policy and the LLM's
declared licence."""


@dataclass(frozen=True)
class Layer:
    """One override: a mapping laid over the configuration (``key`` None), or one ``KEY=VALUE``
    setting that replaces the value at ``key``."""

    label: str
    """How errors name it: ``--set llm.max_new_tokens=64``, a file's path, ``overrides``."""
    value: Any
    key: str | None = None

    def applied(self, raw: dict[str, Any]) -> dict[str, Any]:
        """``raw`` (a configuration as a mapping) with this layer applied; ``raw`` is unchanged."""
        if self.key is None:
            return lay_over(raw, nest(self.value, self.label))
        out = copy.deepcopy(raw)
        node = out
        parts = self.key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"{self.label}: {where} is {child!r}, not a group of settings")
            node = child
        node[parts[-1]] = copy.deepcopy(self.value)
        return out


@dataclass
class Overrides:
    """Layers laid over a configuration, in order. Build them with `from_mapping`,
    `from_assignments`, `from_file` or `of`; apply them with `apply`."""

    layers: list[Layer] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.layers)

    def __add__(self, other: Overrides) -> Overrides:
        return Overrides([*self.layers, *other.layers])

    @classmethod
    def of(cls, given: Overrides | Mapping[str, Any] | Sequence[str] | None, label: str = "overrides") -> Overrides:
        """Overrides from what a caller gave: `Overrides`, a mapping laid over the configuration,
        or ``KEY=VALUE`` settings (a sequence of strings); None gives none."""
        if given is None:
            return cls()
        if isinstance(given, Overrides):
            return given
        if isinstance(given, Mapping):
            return cls.from_mapping(given, label)
        if isinstance(given, str):
            raise ConfigError(f"{label}: expected KEY=VALUE settings (a list) or a mapping, got the string {given!r}")
        return cls.from_assignments(given, label)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], label: str = "overrides") -> Overrides:
        return cls([Layer(label, nest(values, label))]) if values else cls()

    @classmethod
    def from_assignments(cls, items: Sequence[str], label: str = "--set") -> Overrides:
        """``["llm.max_new_tokens=64", ...]``: each setting a layer, named ``<label> KEY=VALUE``."""
        return cls([parse_assignment(item, label) for item in items])

    @classmethod
    def from_file(cls, path: str | Path) -> Overrides:
        return cls([Layer(str(path), read_config_file(path))])

    def apply(self, base: NextGPTConfig, registry: PluginRegistry, where: str, folder: bool = False) -> NextGPTConfig:
        """``base`` with every layer applied, each validated as it applies.

        Args:
            base: the configuration of the preset or folder.
            registry: the plugins whose config models validate each modality's settings.
            where: how errors name the base (``preset tiny``, a folder's ``config.json``).
            folder: ``base`` is a model folder's: only `FOLDER_SETTINGS` may change.

        Raises:
            ConfigError: one line naming the layer, the key, the value and the reason.
        """
        config = base
        for layer in self.layers:
            raw = layer.applied(config.model_dump(mode="json"))
            config = _validated(raw, layer, base, registry, where)
            if folder:
                _check_folder_changes(base, config, registry, layer, where)
        return config


def parse_assignment(item: str, label: str = "--set") -> Layer:
    """``"KEY=VALUE"`` as a `Layer`; the value is read as YAML (so JSON too)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or not all(p.strip() for p in parts):
        raise ConfigError(f"{label} {item!r}: expected KEY=VALUE with a dotted KEY, e.g. llm.max_new_tokens=64")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = str(getattr(exc, "problem", None) or exc).strip()
        raise ConfigError(f"{label} {item}: the value is not YAML or JSON ({reason})") from None
    return Layer(f"{label} {item}", value, key)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON file holding a `NextGPTConfig` or part of one, as a mapping (dotted keys
    expanded). Errors name the file (and the line of a syntax error)."""
    from nextgpt.files import describe_os_error, file_problem

    path = Path(path).expanduser()
    problem = file_problem(path)
    if problem:
        raise ConfigError(f"{path}: {problem}")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {describe_os_error(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        reason = str(getattr(exc, "problem", None) or exc).strip()
        raise ConfigError(f"{path}: not YAML: {reason}{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings (llm, modalities, seed), got {type(data).__name__}")
    return nest(data, str(path))


def nest(values: Mapping[str, Any], label: str = "overrides") -> dict[str, Any]:
    """``values`` with dotted keys expanded (``{"llm.top_p": 0.9}`` -> ``{"llm": {"top_p": 0.9}}``),
    in mappings at every depth; what two keys give for one setting is merged."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not all(key.split(".")):
            raise ConfigError(f"{label}: {key!r} is not a setting's name")
        value = nest(value, label) if isinstance(value, Mapping) else value
        for part in reversed(key.split(".")[1:]):
            value = {part: value}
        head = key.split(".")[0]
        out[head] = lay_over(out, {head: value})[head] if head in out else value
    return out


def lay_over(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid over ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = lay_over(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# -- validation -----------------------------------------------------------------------------------


def _validated(
    raw: dict[str, Any], layer: Layer, base: NextGPTConfig, registry: PluginRegistry, where: str
) -> NextGPTConfig:
    try:
        config = NextGPTConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, layer, NextGPTConfig, ())) from None
    for name, settings in config.modalities.items():
        if name not in base.modalities:
            known = list(base.modalities)
            raise ConfigError(
                f"{layer.label}: modalities.{name}: {where} has no modality {name!r}{hint(name, known)} "
                f"(it has: {listing(known)})"
            )
        if settings == base.modalities[name] and name not in registry.modalities:
            continue  # a folder's modality whose plugin is missing, left as it is
        try:
            spec = registry.modality(name)
        except UnknownModalityError as exc:
            raise ConfigError(f"{layer.label}: modalities.{name}: {exc}") from None
        try:
            settings_model = spec.config_model.model_validate(settings)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, layer, spec.config_model, ("modalities", name))) from None
        try:  # the backends are named by the plugins: checked here, before anything loads
            registry.encoder_backend(name, settings_model.encoder.backend)
            if settings_model.decoder is not None:
                registry.decoder_backend(name, settings_model.decoder.backend)
        except UnknownModalityError as exc:
            raise ConfigError(f"{layer.label}: {exc}") from None
    return config


def _describe(exc: ValidationError, layer: Layer, model: type[BaseModel], prefix: tuple[str, ...]) -> str:
    """The problems of a layer on one line: ``<layer>: <key>: <reason> (got <value>)``, the key left
    out where it is the setting's own."""
    problems = []
    for err in exc.errors():
        loc = tuple(str(part) for part in err["loc"])
        dotted = ".".join((*prefix, *loc))
        shown = repr(err.get("input"))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        if err["type"] == "extra_forbidden":
            known = _fields_at(model, loc[:-1])
            group = ".".join((*prefix, *loc[:-1])) or "the configuration"
            reason = f"no such setting{hint(loc[-1], known)} ({group} has: {listing(known)})"
        else:
            reason = f"{err['msg']} (got {shown})"
        problems.append(reason if dotted == layer.key else f"{dotted}: {reason}")
    return f"{layer.label}: " + "; ".join(problems)


def _fields_at(model: type[BaseModel], loc: Sequence[str]) -> list[str]:
    """The setting names of the pydantic model found at ``loc`` under ``model`` (empty if none)."""
    current: type[BaseModel] | None = model
    for part in loc:
        info = current.model_fields.get(part) if current is not None else None
        current = _model_in(info.annotation) if info is not None else None
    return list(current.model_fields) if current is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model class in a field's annotation (``X``, ``X | None``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


# -- model folders ----------------------------------------------------------------------------------


def _check_folder_changes(
    base: NextGPTConfig, config: NextGPTConfig, registry: PluginRegistry, layer: Layer, where: str
) -> None:
    allowed = [pattern.replace("<name>", "*") for pattern in FOLDER_SETTINGS]
    for path in _changed_paths(_comparable(base, registry), _comparable(config, registry)):
        if not any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, p + ".*") for p in allowed):
            raise ConfigError(
                f"{layer.label}: {path} cannot change over the model folder {where}, whose trained weights depend "
                f"on it (over a folder these can: {', '.join(FOLDER_SETTINGS)}); build from a preset to change it"
            )
    for name in changed_decoders(base, config, registry):
        if _decoder_of(base, name, registry) is not None and _decoder_of(config, name, registry) is None:
            raise ConfigError(
                f"{layer.label}: modalities.{name}.decoder: a model folder's decoder can be replaced, not removed "
                f"({where} trained an output projector for it)"
            )


def _comparable(config: NextGPTConfig, registry: PluginRegistry) -> dict[str, Any]:
    """``config`` as plain data with each installed modality's defaults filled in, so that a
    setting left out and the same setting written out compare equal."""
    data = config.model_dump(mode="json")
    for name, raw in config.modalities.items():
        if name in registry.modalities:
            data["modalities"][name] = registry.modality(name).validate_config(raw).model_dump(mode="json")
    return data


def _changed_paths(before: Any, after: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            yield from _changed_paths(before.get(key), after.get(key), f"{prefix}.{key}" if prefix else key)
    elif before != after:
        yield prefix


def _decoder_of(config: NextGPTConfig, name: str, registry: PluginRegistry) -> Any:
    raw = config.modalities[name]
    if name in registry.modalities:
        return registry.modality(name).validate_config(raw).decoder
    return raw.get("decoder")


def changed_decoders(before: NextGPTConfig, after: NextGPTConfig, registry: PluginRegistry) -> list[str]:
    """The modalities whose decoder settings differ between two configurations."""
    return [
        name
        for name in after.modalities
        if name in before.modalities and _decoder_of(before, name, registry) != _decoder_of(after, name, registry)
    ]


def planned_config(
    name_or_path: str | Path,
    overrides: Overrides | None = None,
    registry: PluginRegistry | None = None,
    modalities: Sequence[str] | None = None,
) -> NextGPTConfig:
    """The configuration ``NextGPTModel.from_pretrained(name_or_path, overrides=...)`` would build,
    from the configuration alone: nothing is loaded, so a command checks its arguments (the model
    name, every override) in a fraction of a second, before a model that takes minutes."""
    from nextgpt.model_folder import read_model_folder
    from nextgpt.plugins import default_registry
    from nextgpt.presets import PRESETS, preset_config

    registry = registry or default_registry()
    overrides = overrides or Overrides()
    if str(name_or_path) in PRESETS:
        config = preset_config(str(name_or_path), registry, modalities)
        return overrides.apply(config, registry, f"preset {name_or_path}")
    folder = read_model_folder(name_or_path)
    return overrides.apply(folder.config, registry, str(folder.config_path), folder=True)


def reads_and_generates(config: NextGPTConfig, registry: PluginRegistry) -> tuple[list[str], list[str]]:
    """The modalities a model of ``config`` reads (those whose plugin is installed) and those it
    generates (which of them have a decoder)."""
    reads, generates = [], []
    for name, raw in config.modalities.items():
        if name in registry.modalities:
            reads.append(name)
            if registry.modality(name).validate_config(raw).decoder is not None:
                generates.append(name)
    return reads, generates
