"""The licence policy: which components a configuration would build, their licences, and a
refusal of those a ``licence_policy: commercial`` configuration excludes.

Everything here reads the configuration and the registry only (each backend registers its
licence), so a policy is checked before any weight is loaded. A refusal is one line naming each
refused component, its licence, and the installed backends (or known LLMs) that permit
commercial use and could replace it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from nextgpt.config import LLMConfig, NextGPTConfig
from nextgpt.errors import LicencePolicyError, RestrictedLicenceWarning
from nextgpt.licences import KNOWN_LLMS, RANDOM_WEIGHTS, Licence
from nextgpt.plugins import PluginRegistry

UNKNOWN_LLM_LICENCE = Licence(
    name="unknown",
    commercial="no",
    note="not declared: give it as llm.licence {name, commercial, source}",
)
"""What an LLM whose licence is neither declared nor in `nextgpt.licences.KNOWN_LLMS` carries:
not known to permit commercial use."""


@dataclass(frozen=True)
class ComponentLicence:
    """One frozen component of a model and its licence."""

    kind: Literal["llm", "encoder", "decoder"]
    modality: str | None
    """The modality of an encoder or decoder; None for the LLM."""
    name: str
    """The backend name, or the LLM's source."""
    licence: Licence

    @property
    def label(self) -> str:
        """``llm (tiny)``, ``image decoder (flux)``: how reports and errors name it."""
        role = "llm" if self.modality is None else f"{self.modality} {self.kind}"
        return f"{role} ({self.name})"


def llm_licence(llm: LLMConfig) -> Licence:
    """The LLM's licence: ``llm.licence`` if given, else the known licence of its source (random
    weights for ``tiny``), else `UNKNOWN_LLM_LICENCE`."""
    if llm.licence is not None:
        return llm.licence
    if llm.source == "tiny":
        return RANDOM_WEIGHTS
    return KNOWN_LLMS.get(llm.source, UNKNOWN_LLM_LICENCE)


def planned_licences(
    config: NextGPTConfig, registry: PluginRegistry, modalities: Iterable[str] | None = None
) -> list[ComponentLicence]:
    """The LLM, encoders and decoders a model of ``config`` would build, with their licences.

    Args:
        config: the model configuration.
        registry: the plugins whose backends the configuration names.
        modalities: the modalities to include (default: those of ``config`` whose plugin is
            installed: a modality left out is not built).
    """
    names = [m for m in config.modalities if m in registry.modalities] if modalities is None else list(modalities)
    out = [ComponentLicence("llm", None, config.llm.source, llm_licence(config.llm))]
    for name in names:
        cfg = registry.modality(name).validate_config(config.modalities[name])
        encoder = registry.encoder_backend(name, cfg.encoder.backend)
        out.append(ComponentLicence("encoder", name, encoder.name, encoder.licence))
        if cfg.decoder is not None:
            decoder = registry.decoder_backend(name, cfg.decoder.backend)
            out.append(ComponentLicence("decoder", name, decoder.name, decoder.licence))
    return out


def commercial_replacements(component: ComponentLicence, registry: PluginRegistry) -> list[str]:
    """What could replace ``component`` and permits commercial use: the installed backends of
    the same modality and kind with ``commercial == "yes"`` (then those ``restricted``, with
    their restriction), or the known LLMs that permit it."""
    if component.kind == "llm":
        return [source for source, licence in KNOWN_LLMS.items() if licence.commercial == "yes"]
    table = registry.encoders if component.kind == "encoder" else registry.decoders
    options = {name: backend.licence for (modality, name), backend in table.items() if modality == component.modality}
    return [name for name, licence in sorted(options.items()) if licence.commercial == "yes"] + [
        f"{name} (restricted: {licence.note})"
        for name, licence in sorted(options.items())
        if licence.commercial == "restricted"
    ]


def _setting(component: ComponentLicence) -> str:
    if component.kind == "llm":
        return "llm.source"
    return f"modalities.{component.modality}.{component.kind}.backend"


def refusal(component: ComponentLicence, registry: PluginRegistry) -> str:
    """``image encoder (imagebind): CC-BY-NC-4.0 permits no commercial use; replace with
    modalities.image.encoder.backend=siglip``: why a component is refused, and the way out."""
    licence = component.licence
    reason = f"{licence.name} ({licence.note})" if licence.note else f"{licence.name} permits no commercial use"
    options = commercial_replacements(component, registry)
    if options:
        way_out = f"replace with {_setting(component)}={' or '.join(options)}"
    else:
        way_out = f"no installed {component.kind} for it permits commercial use"
        way_out += "" if component.kind == "llm" else f"; leave modality {component.modality!r} out"
    return f"{component.label}: {reason}; {way_out}"


def check_licence_policy(
    config: NextGPTConfig,
    registry: PluginRegistry,
    modalities: Iterable[str] | None = None,
    where: str | None = None,
) -> list[ComponentLicence]:
    """Apply ``config.licence_policy`` to the components a model of it would build.

    Under ``commercial``, components with ``commercial == "no"`` (an undeclared LLM licence
    included) raise one `LicencePolicyError` naming each and what could replace it; components
    with ``restricted`` give one `RestrictedLicenceWarning` line listing each with its
    restriction. Returns the components and their licences.

    Args:
        config: the model configuration.
        registry: the plugins providing its backends.
        modalities: the modalities that will be built (see `planned_licences`).
        where: how the error names the configuration (a preset, a folder's config.json), if known.
    """
    components = planned_licences(config, registry, modalities)
    if config.licence_policy != "commercial":
        return components
    refused = [c for c in components if c.licence.commercial == "no"]
    if refused:
        raise LicencePolicyError(
            (f"{where}: " if where else "")
            + f"licence_policy 'commercial' refuses {len(refused)} component(s): "
            + " | ".join(refusal(c, registry) for c in refused)
        )
    restricted = [c for c in components if c.licence.commercial == "restricted"]
    if restricted:
        warnings.warn(
            RestrictedLicenceWarning(
                "licence_policy 'commercial': restricted commercial use: "
                + "; ".join(f"{c.label}: {c.licence.name}, {c.licence.note}" for c in restricted)
            ),
            stacklevel=2,
        )
    return components


def licence_summary(
    config: NextGPTConfig, registry: PluginRegistry, modalities: Iterable[str] | None = None
) -> dict[str, Any]:
    """A JSON-ready summary of the licences of a model of ``config``: each component's record,
    and whether ``licence_policy: commercial`` would accept it (``refused``: one line per
    component it refuses, with the replacement; ``restricted``: one line per restricted one).
    Reads the configuration and the registry only."""
    components = planned_licences(config, registry, modalities)
    refused = [refusal(c, registry) for c in components if c.licence.commercial == "no"]
    restricted = [
        f"{c.label}: {c.licence.name}, {c.licence.note}" for c in components if c.licence.commercial == "restricted"
    ]
    return {
        "licence_policy": config.licence_policy,
        "components": [
            {
                "component": c.label,
                "kind": c.kind,
                "modality": c.modality,
                "name": c.name,
                "licence": c.licence.name,
                "commercial": c.licence.commercial,
                "note": c.licence.note,
                "source": c.licence.source,
            }
            for c in components
        ],
        "commercial_policy": {"passes": not refused, "refused": refused, "restricted": restricted},
    }
