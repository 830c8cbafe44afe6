"""Finding, completing and reading signal-token runs in token sequences.

A modality is generated when its first signal token ``[X0]`` appears. A run cut short (the LLM
wrote ``[IMG0][IMG1]`` and then something else) is completed to ``[X0]..[X{N-1}]`` before the
projector reads it. The projector reads the last-layer hidden states at the positions where the
signal tokens are *inputs*; training and generation use this one definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch


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
