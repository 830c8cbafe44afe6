"""Plugin discovery and the registry of modalities, encoders and decoders.

Plugins are found through the ``nextgpt`` entry-point group and driven by pluggy. We read the
entry points ourselves (rather than ``PluginManager.load_setuptools_entrypoints``) so that we can
name the distribution behind every plugin, refuse two plugins with one entry-point name (pluggy
would silently skip the second), and keep loading the others when one fails.

The environment variable ``NEXTGPT_PLUGINS`` restricts what loads: a comma-separated list of
entry-point or distribution names; set but empty means no plugins at all. A name no installed
plugin has is warned about (`PluginWarning`, with a "did you mean"). Two plugins that claim one
modality, backend, signal token or placeholder are a `PluginConflictError` naming both and the
allow-list that loads one of them; with such a list set, nothing conflicts and everything runs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import pluggy

from nextgpt import hookspecs
from nextgpt.errors import (
    PluginConflictError,
    PluginError,
    PluginLoadError,
    PluginWarning,
    UnknownModalityError,
)
from nextgpt.interfaces import DecoderBackend, EncoderBackend, MetricBackend, ModalitySpec
from nextgpt.suggest import hint, listing

ENV_ALLOW = "NEXTGPT_PLUGINS"


@dataclass
class PluginInfo:
    """One loaded plugin and what it registered."""

    name: str
    """The entry-point name (or the name given to an in-process plugin)."""
    distribution: str | None = None
    version: str | None = None
    modalities: list[str] = field(default_factory=list)
    encoders: list[str] = field(default_factory=list)
    decoders: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """How errors name the plugin: its distribution and version, or its name."""
        if self.distribution:
            return f"{self.distribution} {self.version or ''}".strip()
        return f"plugin {self.name!r}"


@dataclass
class PluginRegistry:
    """What the loaded plugins provide. Build one with `load_plugins`."""

    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    modalities: dict[str, ModalitySpec] = field(default_factory=dict)
    encoders: dict[tuple[str, str], EncoderBackend] = field(default_factory=dict)
    decoders: dict[tuple[str, str], DecoderBackend] = field(default_factory=dict)
    metrics: dict[tuple[str, str], MetricBackend] = field(default_factory=dict)
    errors: list[PluginError] = field(default_factory=list)
    """Plugins that failed to load (`PluginLoadError`), and conflicts when loaded with
    ``conflicts="report"`` (`PluginConflictError`)."""
    owners: dict[str, PluginInfo] = field(default_factory=dict)
    """Who claimed each modality / backend / token / placeholder (keys as in `_claim`)."""

    # -- look-ups ---------------------------------------------------------------------------
    def modality(self, name: str) -> ModalitySpec:
        """The spec of modality ``name``; a clear error if no installed plugin provides it."""
        try:
            return self.modalities[name]
        except KeyError:
            installed = sorted(self.modalities)
            suggestion = hint(name, installed)
            failed = self.load_failure_note(name)
            install = "; install a plugin that provides it (`nextgpt plugins` lists what is installed)"
            fix = failed or ("" if suggestion else install)
            raise UnknownModalityError(
                f"no installed plugin provides modality {name!r}{suggestion} (installed: {listing(installed)}){fix}"
            ) from None

    def load_failure_note(self, name: str) -> str:
        """For a modality ``name`` no loaded plugin provides: ``"; plugin 'depth' (distribution
        nextgpt-depth) is installed but failed to load: <reason>"`` when a plugin whose name or
        distribution holds ``name`` failed to load, a note naming every plugin that failed when
        another did, else ``""``."""
        failed = [e for e in self.errors if isinstance(e, PluginLoadError)]
        related = [e for e in failed if name in e.plugin or name in (e.distribution or "") or e.plugin in name]
        if related:
            return "; " + "; ".join(f"{e.where} is installed but failed to load: {e.reason}" for e in related)
        if failed:
            listed = "; ".join(f"{e.where}: {e.reason}" for e in failed)
            return f"; installed plugins that failed to load (one may provide it): {listed}"
        return ""

    def encoder_backend(self, modality: str, name: str) -> EncoderBackend:
        return self._backend(self.encoders, "encoder", modality, name)

    def decoder_backend(self, modality: str, name: str) -> DecoderBackend:
        return self._backend(self.decoders, "decoder", modality, name)

    def _backend(self, table: Mapping[tuple[str, str], Any], kind: str, modality: str, name: str) -> Any:
        try:
            return table[(modality, name)]
        except KeyError:
            known = sorted(n for m, n in table if m == modality)
            raise UnknownModalityError(
                f"no installed plugin provides {'an' if kind[0] in 'aeiou' else 'a'} {kind} backend {name!r} "
                f"for modality {modality!r}"
                f"{hint(name, known)} (available: {listing(known)})"
            ) from None

    def metrics_for(self, modality: str) -> list[MetricBackend]:
        """Every registered metric of ``modality``."""
        return [m for (mod, _), m in sorted(self.metrics.items()) if mod == modality]

    def owner(self, key: str) -> PluginInfo | None:
        return self.owners.get(key)

    # -- registration -----------------------------------------------------------------------
    def _claim(self, key: str, plugin: PluginInfo) -> None:
        first = self.owners.get(key)
        if first is not None and first is not plugin:
            raise PluginConflictError(key, first.label, plugin.label)
        if first is plugin:
            raise PluginConflictError(key, plugin.label, plugin.label + " (registered twice)")
        self.owners[key] = plugin

    def add_modality(self, spec: ModalitySpec, plugin: PluginInfo) -> None:
        self._claim(f"modality {spec.name!r}", plugin)
        self._claim(f"placeholder {spec.signal_tokens.placeholder!r}", plugin)
        for token in spec.signal_tokens.tokens:
            self._claim(f"signal token {token!r}", plugin)
        self.modalities[spec.name] = spec
        plugin.modalities.append(spec.name)

    def add_encoder(self, backend: EncoderBackend, plugin: PluginInfo) -> None:
        self._claim(f"encoder backend {backend.name!r} for modality {backend.modality!r}", plugin)
        self.encoders[(backend.modality, backend.name)] = backend
        plugin.encoders.append(f"{backend.modality}:{backend.name}")

    def add_decoder(self, backend: DecoderBackend, plugin: PluginInfo) -> None:
        self._claim(f"decoder backend {backend.name!r} for modality {backend.modality!r}", plugin)
        self.decoders[(backend.modality, backend.name)] = backend
        plugin.decoders.append(f"{backend.modality}:{backend.name}")

    def add_metric(self, metric: MetricBackend, plugin: PluginInfo) -> None:
        self._claim(f"metric {metric.name!r} for modality {metric.modality!r}", plugin)
        self.metrics[(metric.modality, metric.name)] = metric
        plugin.metrics.append(f"{metric.modality}:{metric.name}")


def _allowed_names(allow: Iterable[str] | None) -> tuple[set[str] | None, str]:
    """The allow-list (explicit argument, else ``NEXTGPT_PLUGINS``, else everything: None), and
    how messages name it."""
    if allow is not None:
        return {a.strip() for a in allow if a.strip()}, "the plugins allow-list"
    raw = os.environ.get(ENV_ALLOW)
    if raw is None:
        return None, ENV_ALLOW
    return {a.strip() for a in raw.split(",") if a.strip()}, ENV_ALLOW


def _canonical(name: str | None) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name) if name else ""


def _is_allowed(allowed: set[str] | None, name: str, distribution: str | None) -> bool:
    if allowed is None:
        return True
    return name in allowed or _canonical(distribution) in {_canonical(a) for a in allowed}


def _warn_unknown_names(allowed: set[str] | None, source: str, known: dict[str, str | None]) -> None:
    """Warn about each allow-list name that is no plugin's name or distribution (a typo would
    otherwise leave a plugin out without a word). ``known``: plugin name -> distribution."""
    if not allowed:
        return
    names = {*known, *(d for d in known.values() if d)}
    canonical = {_canonical(n) for n in names}
    for name in sorted(allowed):
        if name not in names and _canonical(name) not in canonical:
            warnings.warn(
                f"{source} names {name!r}, which no installed plugin is{hint(name, sorted(names))} "
                f"(installed: {listing(sorted(known))})",
                PluginWarning,
                stacklevel=3,
            )


def _entry_points() -> list[metadata.EntryPoint]:
    seen: set[tuple[str, str, str]] = set()
    unique = []
    for ep in metadata.entry_points(group=hookspecs.PROJECT):
        dist = ep.dist.name if ep.dist is not None else ""
        key = (ep.name, ep.value, dist)
        if key not in seen:  # the same distribution visible twice on sys.path
            seen.add(key)
            unique.append(ep)
    return unique


_HOOKS: list[tuple[str, str]] = [
    ("register_modalities", "add_modality"),
    ("register_encoders", "add_encoder"),
    ("register_decoders", "add_decoder"),
    ("register_metrics", "add_metric"),
]


def load_plugins(
    allow: Iterable[str] | None = None,
    extra_plugins: Mapping[str, object] | None = None,
    entry_points: bool = True,
    conflicts: Literal["raise", "report"] = "raise",
) -> PluginRegistry:
    """Discover plugins and collect what they register.

    Args:
        allow: names (entry point or distribution) to load; default ``NEXTGPT_PLUGINS`` or all.
            A name that no installed plugin has is warned about (`PluginWarning`).
        extra_plugins: in-process plugins (name -> module or object with hookimpls), as tests
            and notebooks use them; they are subject to ``allow`` as well.
        entry_points: discover installed distributions through the ``nextgpt`` group.
        conflicts: ``"raise"``: a conflict is an error; ``"report"``: the second plugin of a
            conflict is left out and the conflict put in ``registry.errors`` (what ``nextgpt
            plugins`` shows).

    Raises:
        PluginConflictError: two plugins claim one modality, backend, signal token,
            placeholder or entry-point name; the message names both and the allow-list that
            loads only one of them.

    A plugin that fails to import or to register is reported as a `PluginLoadError` in
    ``registry.errors`` (and as a warning); what it registered is dropped, the rest load.
    """
    allowed, source = _allowed_names(allow)
    registry = PluginRegistry()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)

    known: dict[str, str | None] = {}
    candidates: list[tuple[PluginInfo, Callable[[], object]]] = []
    if entry_points:
        for ep in _entry_points():
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            known.setdefault(ep.name, dist)
            if _is_allowed(allowed, ep.name, dist):
                candidates.append((PluginInfo(ep.name, dist, version), ep.load))
    for name, obj in (extra_plugins or {}).items():
        known.setdefault(name, None)
        if _is_allowed(allowed, name, None):
            candidates.append((PluginInfo(name, None, None), lambda obj=obj: obj))
    _warn_unknown_names(allowed, source, known)

    def conflict(exc: PluginConflictError, second: PluginInfo) -> None:
        """Raise ``exc`` with the way out, or (``conflicts="report"``) record it and drop ``second``."""
        exc = exc.with_way_out(_way_out(exc, candidates, second, source))
        if conflicts == "raise":
            raise exc from None
        registry.errors.append(exc)
        _drop(registry, second)

    loaded: dict[str, PluginInfo] = {}
    for info, load in candidates:
        if info.name in loaded:
            conflict(PluginConflictError(f"plugin name {info.name!r}", loaded[info.name].label, info.label), info)
            continue
        loaded[info.name] = info
        try:
            pm.register(load(), name=info.name)
        except Exception as exc:  # a broken plugin must not stop the others
            _report(registry, PluginLoadError(info.name, info.distribution, exc))
            continue
        registry.plugins[info.name] = info

    for hook_name, adder in _HOOKS:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            info = registry.plugins.get(impl.plugin_name)
            if info is None:  # failed or left out in an earlier hook
                continue
            staged: list[Any] = []
            try:
                impl.function(register=staged.append)
            except Exception as exc:
                _report(registry, PluginLoadError(info.name, info.distribution, exc))
                _drop(registry, info)
                continue
            for item in staged:
                try:
                    getattr(registry, adder)(item, info)
                except PluginConflictError as exc:
                    conflict(exc, info)
                    break
    return registry


def _way_out(
    exc: PluginConflictError,
    candidates: list[tuple[PluginInfo, Callable[[], object]]],
    second: PluginInfo,
    source: str,
) -> str:
    """How to load only one of two conflicting plugins: an allow-list without the second."""
    if exc.first == exc.second or exc.second.startswith(exc.first + " "):
        return f"; fix the plugin, or leave it out of {ENV_ALLOW}"
    keep = [info.distribution or info.name for info, _ in candidates if info is not second]
    keep = list(dict.fromkeys(k for k in keep if k != (second.distribution or second.name)))
    setting = ENV_ALLOW if source == ENV_ALLOW else f"{source} (or {ENV_ALLOW})"
    return (
        f"; load only one of them by listing the plugins to load in {setting}, "
        f"e.g. {ENV_ALLOW}={','.join(keep)} (all but {second.distribution or second.name})"
    )


def _report(registry: PluginRegistry, error: PluginLoadError) -> None:
    registry.errors.append(error)
    warnings.warn(str(error), RuntimeWarning, stacklevel=3)


def _drop(registry: PluginRegistry, info: PluginInfo) -> None:
    """Forget everything a failing plugin registered so far."""
    registry.plugins.pop(info.name, None)
    for key in [k for k, owner in registry.owners.items() if owner is info]:
        del registry.owners[key]
    for name in info.modalities:
        registry.modalities.pop(name, None)
    tables = ((registry.encoders, info.encoders), (registry.decoders, info.decoders), (registry.metrics, info.metrics))
    for table, names in tables:
        for qualified in names:
            modality, _, backend = qualified.partition(":")
            table.pop((modality, backend), None)


_DEFAULT: dict[str | None, PluginRegistry] = {}


def default_registry() -> PluginRegistry:
    """The registry of the installed plugins (cached per value of ``NEXTGPT_PLUGINS``)."""
    key = os.environ.get(ENV_ALLOW)
    if key not in _DEFAULT:
        _DEFAULT[key] = load_plugins()
    return _DEFAULT[key]


def reset_default_registry() -> None:
    """Forget the cached registry (after installing a plugin in a running process)."""
    _DEFAULT.clear()
