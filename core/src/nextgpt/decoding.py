"""LLM decoding that keeps the last hidden state of every token it feeds.

The signal tokens' states condition the decoders. They are read from the forward passes that
`transformers`' ``generate`` already makes, not from a second pass over the whole sequence: a
forward pre-hook on the LLM's output layer (``lm_head``) records its input, which is the
last-layer state after the final norm (what ``output_hidden_states`` reports last) for each
token fed. A generated token is fed on the step after it is produced, so every generated token
but the last has its state once decoding ends. Tokens the answer gains afterwards (a signal run
completed or requested, or the last token itself) are fed in one short continuation over the
kept KV cache: only those tokens run through the LLM.

Conversations of a batch are left-padded to one length and decoded together; the KV cache is
``transformers``' own, dynamic or static (``llm.cache``), sized by us so the continuation fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nextgpt.llm import base_model


class OutputLayerInputs:
    """Records the input of ``llm``'s output layer on each forward, while entered as a context.

    Without ``steps``, each forward's input ``[B, t, d]`` is kept in `records` (for a single
    eager forward). With ``steps`` (a ``generate`` call of at most that many forwards), the last
    position of each forward's input is written into a preallocated ``[B, steps, d]`` buffer at a
    position counted by a tensor: in-place tensor writes only, so a decoding step compiled by
    ``torch.compile`` (``transformers`` does it with a static cache on a GPU) traces them into
    its graph instead of recompiling on every step, as a growing Python list would make it."""

    def __init__(self, llm: nn.Module, steps: int | None = None) -> None:
        self.layer = llm.get_output_embeddings()
        self.steps = steps
        self.records: list[torch.Tensor] = []
        self.buffer: torch.Tensor | None = None
        self.count: torch.Tensor | None = None
        self._handle: Any = None

    def _record(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        hidden = args[0].detach()
        if self.steps is None:
            self.records.append(hidden)
            return
        if self.buffer is None:  # the first forward (the prefill, never compiled) allocates
            self.buffer = hidden.new_zeros((hidden.shape[0], self.steps, hidden.shape[-1]))
            self.count = torch.zeros(1, dtype=torch.long, device=hidden.device)
            torch._dynamo.mark_static_address(self.buffer)
            torch._dynamo.mark_static_address(self.count)
        assert self.count is not None
        self.buffer.index_copy_(1, self.count, hidden[:, -1:])
        self.count.add_(1).clamp_(max=self.steps - 1)  # a forward past the last is dropped

    def recorded(self) -> torch.Tensor:
        """``[B, n, d]``: the last-position states of the forwards so far (``steps`` mode)."""
        assert self.buffer is not None and self.count is not None
        return self.buffer[:, : int(self.count.item())]

    def __enter__(self) -> OutputLayerInputs:
        self.records, self.buffer, self.count = [], None, None
        self._handle = self.layer.register_forward_pre_hook(self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


def left_pad(prompts: Sequence[torch.Tensor], pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[L_i, d]`` prompt embeddings -> ``([B, P, d]`` left-padded with ``pad`` ``[d]``, ``[B, P]`` mask)."""
    length = max(p.shape[0] for p in prompts)
    rows, masks = [], []
    for prompt in prompts:
        missing = length - prompt.shape[0]
        rows.append(torch.cat([pad.to(prompt.dtype).expand(missing, -1), prompt]))
        mask = torch.ones(length, dtype=torch.long, device=prompt.device)
        mask[:missing] = 0
        masks.append(mask)
    return torch.stack(rows), torch.stack(masks)


def new_cache(llm: nn.Module, kind: str, max_length: int) -> Any:
    """A fresh KV cache of ``transformers``: ``dynamic`` grows as needed; ``static`` is allocated
    once for ``max_length`` positions (what ``torch.compile`` and CUDA graphs need)."""
    from transformers import DynamicCache, StaticCache

    config = base_model(llm).config.get_text_config(decoder=True)
    if kind == "static":
        return StaticCache(config=config, max_cache_len=max_length)
    return DynamicCache(config=config)


def as_dynamic(llm: nn.Module, cache: Any, length: int) -> Any:
    """A dynamic cache holding the first ``length`` positions of ``cache`` (a static one that
    has no room left)."""
    dynamic = new_cache(llm, "dynamic", length)
    for index, layer in enumerate(cache.layers):
        dynamic.update(layer.keys[:, :, :length], layer.values[:, :, :length], index)
    return dynamic


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading items ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class DecodedBatch:
    """What `decode` leaves: the generated ids, the states of the fed ones, and the cache."""

    new_ids: list[list[int]]
    """Per row, the generated ids (rows that finished early continue with the pad id)."""
    fed_states: torch.Tensor
    """``[B, S, d]``: ``fed_states[b, j]`` is the last-layer state of ``new_ids[b][j]``, for the
    ``S = len(new_ids[b]) - 1`` tokens fed back while decoding."""
    cache: Any
    prompt_mask: torch.Tensor
    """``[B, P]`` the left-padded prompts' attention mask."""


def decode(
    llm: nn.Module,
    prompts: Sequence[torch.Tensor],
    pad_embedding: torch.Tensor,
    cache_kind: str,
    spare_positions: int,
    **generate_kwargs: Any,
) -> DecodedBatch:
    """Generate for each ``[L_i, d]`` prompt embedding, as one left-padded batch, recording states.

    Args:
        llm: the Hugging Face causal LM (possibly peft-wrapped).
        prompts: one prompt embedding per conversation.
        pad_embedding: ``[d]`` what padding positions hold (masked out, so any finite vector).
        cache_kind: ``dynamic`` or ``static``.
        spare_positions: positions a static cache keeps beyond prompt + ``max_new_tokens``, for
            tokens appended after decoding (see `states_of`).
        generate_kwargs: passed on to ``llm.generate`` (``max_new_tokens`` required).
    """
    embeds, mask = left_pad(prompts, pad_embedding)
    max_length = embeds.shape[1] + int(generate_kwargs["max_new_tokens"]) + spare_positions
    cache = new_cache(llm, cache_kind, max_length)
    # one slot for the prefill, one per step, one spare for a forward past the last token
    with OutputLayerInputs(llm, steps=int(generate_kwargs["max_new_tokens"]) + 2) as recorded:
        out = llm.generate(inputs_embeds=embeds, attention_mask=mask, cache=cache, **generate_kwargs)
    sequences = out if isinstance(out, torch.Tensor) else out.sequences
    steps = sequences.shape[1]
    # slot 0 is the prefill; slot k (k >= 1) the step that fed generated token k - 1
    fed_states = recorded.recorded()[:, 1:steps].clone()
    return DecodedBatch(sequences.tolist(), fed_states, cache, mask)


def states_of(
    llm: nn.Module, decoded: DecodedBatch, wanted: Sequence[Sequence[int] | None], pad_id: int
) -> list[torch.Tensor | None]:
    """The last-layer states ``[len(w), d]`` of each row's answer ids ``w`` (None: not wanted).

    ``w`` may differ from what was generated (cut at a stop, signal runs completed or appended):
    the states of its longest prefix that was fed while decoding are taken as recorded; the rest
    is fed in one continuation over the cache, cropped back to that prefix (the shortest over
    the rows), so only the tokens not yet seen run through the LLM."""
    fed_len = decoded.fed_states.shape[1]
    shared = [
        common_prefix(w, ids[:fed_len]) if w is not None else 0 for w, ids in zip(wanted, decoded.new_ids, strict=True)
    ]
    pending = [b for b, w in enumerate(wanted) if w is not None and shared[b] < len(w)]
    if not pending:
        return [decoded.fed_states[b, : len(w)] if w is not None else None for b, w in enumerate(wanted)]
    start = min(shared[b] for b in pending)
    rows = len(wanted)
    tails = [list(wanted[b][start:]) if b in pending else [] for b in range(rows)]
    width = max(len(t) for t in tails)
    device = decoded.prompt_mask.device
    ids = torch.full((rows, width), pad_id, dtype=torch.long, device=device)
    tail_mask = torch.zeros((rows, width), dtype=torch.long, device=device)
    for b, tail in enumerate(tails):
        ids[b, : len(tail)] = torch.tensor(tail, dtype=torch.long, device=device)
        tail_mask[b, : len(tail)] = 1
    prompt_length = decoded.prompt_mask.shape[1]
    cache = decoded.cache
    cache.crop(-(int(cache.get_seq_length()) - (prompt_length + start)))  # negative: how many to drop
    capacity = getattr(cache.layers[0], "max_cache_len", None)
    if capacity is not None and prompt_length + start + width > capacity:
        cache = as_dynamic(llm, cache, prompt_length + start)  # rare: more appended than was kept spare
    done = torch.ones((rows, start), dtype=torch.long, device=device)
    mask = torch.cat([decoded.prompt_mask, done, tail_mask], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -width:]
    with OutputLayerInputs(llm) as recorded:
        llm(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
    tail_states = recorded.records[-1]
    out: list[torch.Tensor | None] = []
    for b, w in enumerate(wanted):
        if w is None:
            out.append(None)
        elif b in pending:
            out.append(torch.cat([decoded.fed_states[b, :start], tail_states[b, : len(w) - start]]))
        else:
            out.append(decoded.fed_states[b, : len(w)])
    return out
