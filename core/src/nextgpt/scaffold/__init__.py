"""Templates for ``nextgpt new-plugin``: a working plugin distribution to build on."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

from nextgpt.errors import ConfigError

NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")

# template file -> where it goes in the new distribution ("{name}" is the modality name)
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "src/nextgpt_{name}/__init__.py",
    "media.py.tmpl": "src/nextgpt_{name}/media.py",
    "encoder.py.tmpl": "src/nextgpt_{name}/encoder.py",
    "decoder.py.tmpl": "src/nextgpt_{name}/decoder.py",
    "test_conformance.py.tmpl": "tests/test_conformance.py",
}


def scaffold_plugin(name: str, parent: str | Path = ".") -> Path:
    """Write the distribution ``nextgpt-<name>`` under ``parent`` and return its folder.

    The plugin registers modality ``name`` with signal tokens ``[<NAME>0]..[<NAME>3]``, a small
    encoder and decoder, and a test that runs the nextgpt conformance kit.
    """
    if not NAME.match(name):
        raise ConfigError(f"plugin name {name!r}: use lower-case letters, digits and '_', starting with a letter")
    root = Path(parent) / f"nextgpt-{name}"
    if root.exists():
        raise ConfigError(f"{root}: already exists; choose another name or folder")
    values = {
        "core_range": compatible_range(),
        "name": name,
        "Name": "".join(part.capitalize() for part in name.split("_")),
        "prefix": name.replace("_", "").upper(),
    }
    templates = resources.files(__package__)
    for template, target in FILES.items():
        path = root / target.format(name=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(templates.joinpath(template).read_text()).substitute(values))
    return root


def compatible_range(version: str | None = None) -> str:
    """The nextgpt-core versions a plugin written against ``version`` (default: this one) works
    with: the same minor series, e.g. ``>=0.1.0,<0.2`` for 0.1.0 (``0.x`` minors may break)."""
    from nextgpt import __version__

    major, minor = (int(part) for part in (version or __version__).split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f">={version or __version__},<{upper}"
