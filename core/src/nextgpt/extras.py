"""Optional parts of nextgpt-core (``train``, ``eval``, ``imagebind``): checked when used.

The requirements of each extra are read from nextgpt-core's own metadata, so this module never
drifts from ``pyproject.toml``. A missing or out-of-range requirement is a `MissingExtraError`
with one line: what needs it, what is missing, and the command that installs it.
"""

from __future__ import annotations

from importlib import metadata

from nextgpt.errors import NextGPTError

DISTRIBUTION = "nextgpt-core"


class MissingExtraError(NextGPTError, ImportError):
    """An optional part of nextgpt-core is used but its extra is not installed."""


def extra_requirements(extra: str) -> list[str]:
    """The requirement strings of ``nextgpt-core[extra]`` (empty when nextgpt-core runs from a
    source tree without installed metadata)."""
    from packaging.requirements import Requirement

    try:
        lines = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    found = []
    for line in lines:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is not None and "extra" in str(marker) and marker.evaluate({"extra": extra}):
            found.append(line)
    return found


def missing_requirements(extra: str) -> list[str]:
    """The requirements of ``nextgpt-core[extra]`` that are not installed, or installed at a
    version outside the required range (``"lightning>=2.2 (found 2.0)"``)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    missing = []
    for line in extra_requirements(extra):
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == DISTRIBUTION:
            for inner in requirement.extras:
                missing += missing_requirements(inner)
            continue
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(requirement.name)
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{requirement.name}{requirement.specifier} (found {version})")
    return missing


def install_command(extra: str) -> str:
    return f'pip install "{DISTRIBUTION}[{extra}]"'


def require_extra(extra: str, feature: str) -> None:
    """Raise `MissingExtraError` unless every requirement of ``nextgpt-core[extra]`` is met.

    Args:
        extra: the extra's name in nextgpt-core's ``pyproject.toml``.
        feature: what needs it, as the message names it (e.g. ``"nextgpt fit"``).
    """
    missing = missing_requirements(extra)
    if missing:
        raise MissingExtraError(
            f"{feature} needs the {extra!r} extra (missing: {', '.join(missing)}); install it with: "
            f"{install_command(extra)}"
        )
