"""Signal tokens out: finding, completing and reading their runs, and projecting their states
into decoder conditions.

A modality is generated when its first signal token ``[X0]`` appears. A run cut short (the LLM
wrote ``[X0][X1]`` and then something else) is completed to ``[X0]..[X{N-1}]`` before the
projector reads it. The projector reads the last-layer hidden states at the positions where the
signal tokens are *inputs*; training and generation use this one definition
(`SignalConditionsMixin.signal_conditions`, `project_signal`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from nextgpt.conditions import Condition

if TYPE_CHECKING:
    from torch import nn

    from nextgpt.config import ModalityConfig


def complete_signal_runs(
    ids: Sequence[int], runs: Mapping[str, Sequence[int]], request: Iterable[str] = ()
) -> list[int]:
    """Complete every partial run and append a full run for each requested modality missing one.

    Args:
        ids: generated token ids.
        runs: modality -> its signal-token ids in order.
        request: modalities that must appear; absent ones get their run appended at the end.
    """
    out: list[int] = []
    i = 0
    firsts = {run[0]: run for run in runs.values()}
    while i < len(ids):
        token = ids[i]
        run = firsts.get(token)
        if run is None:
            out.append(token)
            i += 1
            continue
        matched = 0
        while matched < len(run) and i + matched < len(ids) and ids[i + matched] == run[matched]:
            matched += 1
        out.extend(run)
        i += matched
    present = {name for name, start in find_signal_runs(out, runs)}
    for name in request:
        if name not in present:
            out.extend(runs[name])
    return out


def find_signal_runs(ids: Sequence[int], runs: Mapping[str, Sequence[int]]) -> list[tuple[str, int]]:
    """``(modality, start)`` of every complete run in ``ids``, in order of position."""
    found = []
    for name, run in runs.items():
        n = len(run)
        for start in range(len(ids) - n + 1):
            if ids[start] == run[0] and list(ids[start : start + n]) == list(run):
                found.append((start, name))
    return [(name, start) for start, name in sorted(found)]


def gather_signal_states(
    last_hidden: torch.Tensor, input_ids: torch.Tensor, run: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden states at the first complete ``run`` of each row.

    Args:
        last_hidden: ``[B, T, d]`` last-layer states (after the final norm).
        input_ids: ``[B, T]`` the ids fed at each position.
        run: the modality's signal-token ids.

    Returns:
        ``(states [R, N, d], rows [R])`` for the R rows that contain the run.
    """
    n = len(run)
    run_t = torch.tensor(list(run), device=input_ids.device)
    states, rows = [], []
    for row in range(input_ids.shape[0]):
        starts = (input_ids[row] == run_t[0]).nonzero().flatten().tolist()
        for start in starts:
            if start + n <= input_ids.shape[1] and torch.equal(input_ids[row, start : start + n], run_t):
                states.append(last_hidden[row, start : start + n])
                rows.append(row)
                break
    if not states:
        return last_hidden.new_zeros((0, n, last_hidden.shape[-1])), torch.zeros(0, dtype=torch.long)
    return torch.stack(states), torch.tensor(rows, dtype=torch.long)


class SignalConditionsMixin:
    """Signal-token states -> decoder conditions, for `NextGPTModel` (mixed into it)."""

    if TYPE_CHECKING:
        signal_ids: dict[str, list[int]]
        modality_configs: dict[str, ModalityConfig]
        output_projectors: nn.ModuleDict
        embed_tokens: Callable[[torch.Tensor], torch.Tensor]

    def signal_conditions(
        self, last_hidden: torch.Tensor, input_ids: torch.Tensor, modality: str
    ) -> tuple[Condition, torch.Tensor]:
        """Decoder conditions for every row of ``input_ids`` ``[B, T]`` that holds a complete run of
        ``modality``'s signal tokens, read from the last-layer states ``[B, T, d]`` at the
        positions where those tokens are the inputs. Returns ``(conditions of R rows, rows [R])``."""
        states, rows = gather_signal_states(last_hidden, input_ids, self.signal_ids[modality])
        return self.project_signal(states, modality), rows

    def project_signal(self, states: torch.Tensor, modality: str) -> Condition:
        """``[R, N, d_llm]`` signal-token states -> a decoder `Condition` of ``R`` rows.

        As released, the signal tokens' input embeddings are added to their states first
        (``output_projector.add_token_embeddings``)."""
        if self.modality_configs[modality].output_projector.add_token_embeddings:
            ids = torch.tensor(self.signal_ids[modality], device=states.device).expand(states.shape[0], -1)
            states = states + self.embed_tokens(ids).to(states.dtype)
        projector = self.output_projectors[modality]
        return projector(states.to(next(projector.parameters()).dtype))
