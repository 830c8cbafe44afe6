"""``nextgpt plugins``: what is installed, as a table or JSON, with every backend's licence
(``commercial``: yes / restricted / no, and its source); ``--model NAME`` adds the licences of a
model's components and the commercial policy's verdict; ``--backends-table`` prints the README's
backends table. Exits with 1 when a plugin failed to load or two plugins conflict (each is an
``error:`` line on standard error, and in the JSON)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from nextgpt.cli.options import add_json_argument, check_json_target, print_result
from nextgpt.tables import format_table as text_table

if TYPE_CHECKING:
    from nextgpt.plugins import PluginRegistry


def add(parser: argparse.ArgumentParser):
    add_json_argument(parser)
    parser.add_argument(
        "--model",
        metavar="NAME",
        default=None,
        help="also summarise the licences of this model's components (a preset or model folder, read "
        "without loading anything) and say whether licence_policy: commercial accepts them",
    )
    parser.add_argument(
        "--backends-table",
        action="store_true",
        help="print the Markdown table of backends (licence, commercial use, condition, memory), as the README has it",
    )
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
                        "commercial": backend.licence.commercial,
                        "commercial_use": backend.licence.commercial_use,
                        "licence_note": backend.licence.note,
                        "licence_source": backend.licence.source,
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
        return "\n".join(lines)
    return "\n".join([*lines, "", licence_table(data)])


def model_licence_table(summary: dict[str, Any]) -> str:
    """A model's components and their licences, then the commercial policy's verdict."""
    header = ("component", "licence", "commercial", "restriction or note", "source")
    rows = [
        (c["component"], c["licence"], c["commercial"], c["note"] or "-", c["source"] or "-")
        for c in summary["components"]
    ]
    policy = summary["commercial_policy"]
    if policy["passes"]:
        lines = [f"model {summary['name']}: licence_policy commercial accepts it"]
    else:
        lines = [f"model {summary['name']}: licence_policy commercial refuses {len(policy['refused'])} component(s):"]
        lines += [f"  {line}" for line in policy["refused"]]
    if policy["restricted"]:
        lines.append("restricted: " + "; ".join(policy["restricted"]))
    return "\n".join([text_table(header, rows), *lines])


def licence_table(data: dict[str, Any]) -> str:
    """Every backend's licence: whether it permits commercial use (yes / restricted / no), the
    restriction, and where that fact comes from."""
    header = ("backend", "licence", "commercial", "restriction or note", "source")
    rows = [
        (
            f"{b['kind']} {b['modality']}:{b['name']}",
            b["licence"],
            b["commercial"],
            b["licence_note"] or "-",
            b["licence_source"] or "-",
        )
        for p in data["plugins"]
        for b in p["backends"]
    ]
    return text_table(header, rows)


def installed_registry() -> PluginRegistry:
    """The installed plugins; two in conflict are both reported (the second left out), not raised."""
    import warnings

    from nextgpt.errors import PluginConflictError
    from nextgpt.plugins import default_registry, load_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # failures are printed as errors below
        try:
            return default_registry()
        except PluginConflictError:
            return load_plugins(conflicts="report")


def run(args: argparse.Namespace) -> int:
    check_json_target(args)
    registry = installed_registry()
    if args.backends_table:
        from nextgpt.catalogue import backends_markdown

        print(backends_markdown(registry))
        return 1 if registry.errors else 0
    data = describe(registry)
    table = format_table(data)
    if args.model is not None:
        from nextgpt.licence_policy import licence_summary
        from nextgpt.overrides import planned_config

        data["model"] = {"name": args.model, **licence_summary(planned_config(args.model, registry=registry), registry)}
        table += "\n\n" + model_licence_table(data["model"])
    print_result(args, data, table)
    for err in data["errors"]:
        print(f"error: {err}", file=sys.stderr)
    return 1 if data["errors"] else 0
