"""The backends table: every installed encoder and decoder backend with its licence, whether it
permits commercial use, the condition (or features) and the memory of its default weights.

Generated from the registry (each backend's `Licence` and `BackendCard`), so the README's copy
cannot drift: ``nextgpt plugins --backends-table`` prints it, and the test suite compares the
README with it.
"""

from __future__ import annotations

from typing import Any

from nextgpt.interfaces import DecoderBackend, EncoderBackend
from nextgpt.plugins import PluginRegistry

HEADER = (
    "modality",
    "kind",
    "backend",
    "default weights",
    "licence",
    "commercial",
    "condition / features",
    "parameters",
    "memory (16-bit)",
)


def _commercial(backend: EncoderBackend | DecoderBackend) -> str:
    licence = backend.licence
    return f"restricted: {licence.note}" if licence.commercial == "restricted" else licence.commercial


def _shape(kind: str, backend: Any) -> str:
    card = backend.card
    if card is None:
        return "-"
    if kind == "decoder" and card.condition is not None:
        return str(card.condition)
    if kind == "encoder" and card.features is not None:
        return f"[{card.features[0]}, {card.features[1]}]"
    return "-"


def backend_rows(registry: PluginRegistry) -> list[tuple[str, ...]]:
    """One row per backend (`HEADER`), by modality, encoders first, then by name."""
    rows = []
    for kind, table in (("encoder", registry.encoders), ("decoder", registry.decoders)):
        for (modality, name), backend in table.items():
            card = backend.card
            parameters = "-" if card is None else f"{card.parameters:g} B" + (f" ({card.note})" if card.note else "")
            rows.append(
                (
                    modality,
                    kind,
                    f"`{name}`",
                    "-" if card is None else f"`{card.weights}`",
                    backend.licence.name,
                    _commercial(backend),
                    _shape(kind, backend),
                    parameters,
                    "-" if card is None else f"{card.memory_gib():.1f} GiB",
                )
            )
    return sorted(rows, key=lambda row: (row[0], row[1] != "encoder", row[2]))


def backends_markdown(registry: PluginRegistry) -> str:
    """The backends table in Markdown, as the README holds it."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in backend_rows(registry)]
    return "\n".join(lines)
