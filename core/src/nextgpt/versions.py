"""What is installed: nextgpt's distributions and plugins with their versions (``nextgpt --version``).

Read from package metadata only: no plugin is imported, so a broken plugin is still listed and
the answer comes in a fraction of a second.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata

from nextgpt.hookspecs import PROJECT

CORE = "nextgpt-core"


@dataclass(frozen=True)
class InstalledDistribution:
    name: str
    version: str
    plugins: tuple[str, ...]
    """Entry-point names this distribution registers in the ``nextgpt`` group."""


def _requires_core(dist: metadata.Distribution) -> bool:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    for line in dist.requires or []:
        try:
            if canonicalize_name(Requirement(line).name) == CORE:
                return True
        except InvalidRequirement:
            continue
    return False


def installed_distributions() -> list[InstalledDistribution]:
    """nextgpt-core first, then every distribution that provides ``nextgpt`` plugins or
    depends on nextgpt-core, by name."""
    from packaging.utils import canonicalize_name

    found: dict[str, InstalledDistribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = canonicalize_name(name)
        plugins = tuple(sorted(ep.name for ep in dist.entry_points if ep.group == PROJECT))
        if key in found or not (key == CORE or plugins or _requires_core(dist)):
            continue
        found[key] = InstalledDistribution(name, dist.version, plugins)
    return sorted(found.values(), key=lambda d: (canonicalize_name(d.name) != CORE, d.name))


def version_report() -> str:
    """The text of ``nextgpt --version``."""
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    lines = [f"nextgpt (Python {platform.python_version()}, torch {torch_version})"]
    dists = installed_distributions()
    if not any(d.name == CORE for d in dists):
        lines.append(f"  {CORE}: running from a source tree (not installed)")
    for dist in dists:
        plugins = f"  plugins: {', '.join(dist.plugins)}" if dist.plugins else ""
        lines.append(f"  {dist.name} {dist.version}{plugins}")
    return "\n".join(lines)
