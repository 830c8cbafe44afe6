"""``nextgpt plugins``: what is installed, as a table or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nextgpt.plugins import PluginRegistry, load_plugins
from nextgpt.tables import format_table as text_table


def add(parser: argparse.ArgumentParser):
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return run


def describe(registry: PluginRegistry) -> dict[str, Any]:
    """A JSON-ready description of the installed plugins."""
    plugins = []
    for info in registry.plugins.values():
        modalities = []
        for name in info.modalities:
            spec = registry.modalities[name]
            modalities.append(
                {
                    "name": name,
                    "signal_tokens": spec.signal_tokens.tokens,
                    "placeholder": spec.signal_tokens.placeholder,
                    "extensions": list(spec.extensions),
                }
            )
        backends = []
        for kind, table in (("encoder", registry.encoders), ("decoder", registry.decoders)):
            for qualified in getattr(info, kind + "s"):
                modality, _, name = qualified.partition(":")
                backend = table[(modality, name)]
                backends.append(
                    {
                        "kind": kind,
                        "modality": modality,
                        "name": name,
                        "licence": backend.licence.name,
                        "commercial_use": backend.licence.commercial_use,
                        "licence_note": backend.licence.note,
                    }
                )
        plugins.append(
            {
                "plugin": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "modalities": modalities,
                "backends": backends,
            }
        )
    return {"plugins": plugins, "errors": [str(e) for e in registry.errors]}


def format_table(data: dict[str, Any]) -> str:
    header = ("distribution", "version", "modalities", "signal tokens", "backends")
    rows = []
    for p in data["plugins"]:
        tokens = []
        for m in p["modalities"]:
            toks = m["signal_tokens"]
            span = f"{toks[0]}..{toks[-1]}" if len(toks) > 1 else toks[0]
            tokens.append(f"{len(toks)} {span}")
        backends = [
            f"{b['kind']} {b['modality']}:{b['name']}"
            + (f" ({b['licence_note']})" if b["licence_note"] else "" if b["commercial_use"] else " (non-commercial)")
            for b in p["backends"]
        ]
        rows.append(
            (
                p["distribution"] or p["plugin"],
                p["version"] or "-",
                ", ".join(m["name"] for m in p["modalities"]) or "-",
                ", ".join(tokens) or "-",
                "; ".join(backends) or "-",
            )
        )
    lines = text_table(header, rows).split("\n")
    if not rows:
        lines.append("(no plugins installed or allowed; see NEXTGPT_PLUGINS)")
    for err in data["errors"]:
        lines.append(f"error: {err}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # errors are printed in the output
        registry = load_plugins()
    data = describe(registry)
    print(json.dumps(data, indent=2) if args.json else format_table(data))
    return 0
