"""Padding packed conversations into a batch for the LLM."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100
"""The label of positions without a loss (prompt, media, padding), as Hugging Face uses it."""


@dataclass
class PaddedBatch:
    embeds: torch.Tensor
    """``[B, T, d]``, right-padded with zeros."""
    attention_mask: torch.Tensor
    """``[B, T]``, 1 on real positions."""
    input_ids: torch.Tensor
    """``[B, T]``, padded with ``pad_id``."""
    labels: torch.Tensor
    """``[B, T]``, -100 on padding (and wherever the packed labels had it)."""


def pad_packed(packed: Sequence[object], pad_id: int, max_length: int | None = None) -> PaddedBatch:
    """Right-pad `nextgpt.packing.PackedInput`s into one batch; ``max_length`` truncates (right)."""
    if not packed:
        raise ValueError("pad_packed: empty batch")
    lengths = [int(p.input_ids.shape[0]) for p in packed]  # type: ignore[attr-defined]
    if max_length is not None:
        lengths = [min(n, max_length) for n in lengths]
    width = max(lengths)
    first = packed[0].embeds  # type: ignore[attr-defined]
    device = first.device
    mask = torch.zeros((len(packed), width), dtype=torch.long, device=device)
    ids = torch.full((len(packed), width), pad_id, dtype=torch.long, device=device)
    labels = torch.full((len(packed), width), IGNORE_INDEX, dtype=torch.long, device=device)
    rows_embeds = []
    for row, (item, n) in enumerate(zip(packed, lengths, strict=True)):
        rows_embeds.append(torch.cat([item.embeds[:n], first.new_zeros((width - n, first.shape[-1]))]))  # type: ignore[attr-defined]
        mask[row, :n] = 1
        ids[row, :n] = item.input_ids[:n].to(device)  # type: ignore[attr-defined]
        labels[row, :n] = item.labels[:n].to(device)  # type: ignore[attr-defined]
    embeds = torch.stack(rows_embeds)  # keeps the graph to the projectors and embedding rows
    return PaddedBatch(embeds, mask, ids, labels)
