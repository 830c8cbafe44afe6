"""The optimiser and the learning-rate schedule.

AdamW over the trainable parameters, without weight decay on the embedding rows and matrices,
biases and norms; a linear warmup, then ``linear`` or ``cosine`` decay to 0 or a ``constant``
rate. The schedule's length is the trainer's planned steps on a fresh run and the checkpoint's
on a resumed one, so a resumed run follows the schedule the interrupted one was on
(``schedule_steps`` sets it explicitly).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nextgpt.errors import ConfigError, NextGPTWarning
from nextgpt.llm import base_model, signal_row_parameters


def parameter_groups(model: Any, weight_decay: float, decay_everything: bool = False) -> list[dict[str, Any]]:
    """The trainable parameters of a `NextGPTModel`, with weight decay off for the embedding
    rows and matrices, biases and norms (on for all with ``decay_everything``, as the released
    recipe did). Nothing to train is a `ConfigError`."""
    inner = base_model(model.llm)
    no_decay_ids = {id(p) for p in signal_row_parameters(inner)}
    for module in (inner.get_input_embeddings(), inner.get_output_embeddings()):
        if module is not None and not hasattr(module, "parametrizations"):
            no_decay_ids.add(id(module.weight))
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        spared = not decay_everything and (id(param) in no_decay_ids or param.ndim < 2)
        (no_decay if spared else decay).append(param)
    if not decay and not no_decay:
        raise ConfigError("nothing to train: every trainable group is off")
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def warmup_length(total: int, warmup_steps: int | None, warmup_ratio: float, min_warmup_steps: int) -> int:
    """``warmup_steps`` if set, else ``max(min_warmup_steps, warmup_ratio * total)`` (at most
    ``total``), as released."""
    if warmup_steps is not None:
        return int(warmup_steps)
    return min(total, max(min_warmup_steps, int(warmup_ratio * total)))


def schedule_length(
    planned: int,
    schedule_steps: int | None,
    saved: dict[str, int] | None,
    warmup: Callable[[int], int],
    schedule: str,
) -> tuple[int, int]:
    """``(total, warmup)`` optimizer steps of the schedule: ``schedule_steps`` if set; else,
    resuming, the checkpoint's (``saved``); else the trainer's ``planned`` steps. A resumed run
    whose length differs from the checkpoint's is said in a `NextGPTWarning`."""
    if schedule_steps is not None:
        total = int(schedule_steps)
        if saved is not None and saved["total_steps"] != total:
            warnings.warn(
                f"resuming with model.schedule_steps={total}: the learning-rate schedule changes from the "
                f"checkpoint's {saved['total_steps']} steps, so this run differs from an uninterrupted one",
                NextGPTWarning,
                stacklevel=3,
            )
        return total, warmup(total)
    if saved is not None:
        total = saved["total_steps"]
        if planned != total:
            warnings.warn(
                f"resuming: the learning-rate schedule keeps the checkpoint's length of {total} steps while the "
                f"trainer now plans {planned}; after step {total} the rate stays at the schedule's end value "
                f"({'0' if schedule in ('linear', 'cosine') else 'the base rate'}). To stretch the schedule "
                f"instead, pass --model.schedule_steps {planned}",
                NextGPTWarning,
                stacklevel=3,
            )
        return total, saved["warmup_steps"]
    return planned, warmup(planned)


def lr_factor(schedule: str, total: int, warmup: int) -> Callable[[int], float]:
    """The learning rate's multiplier at each optimizer step (for `torch.optim.lr_scheduler.LambdaLR`)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return max(0.0, 1.0 - progress) if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_optimizer(
    groups: list[dict[str, Any]],
    lr: float,
    betas: tuple[float, float],
    weight_decay: float,
    schedule: str,
    total: int,
    warmup: int,
) -> dict[str, Any]:
    """AdamW and its step-wise scheduler, as Lightning's ``configure_optimizers`` returns them."""
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule, total, warmup))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
