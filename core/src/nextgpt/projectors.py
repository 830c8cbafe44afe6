"""Trainable projections between the frozen parts: encoder -> LLM and LLM -> decoder."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nextgpt.conditions import Condition, ConditionPart, ConditionSpec
from nextgpt.config import InputProjectorConfig, OutputProjectorConfig
from nextgpt.interfaces import InputProjector, OutputProjector


class LinearInputProjector(InputProjector):
    """One LLM token per encoder feature: ``Linear(d_enc, d_llm)`` (the released design)."""

    def __init__(self, d_enc: int, d_llm: int) -> None:
        super().__init__()
        self.num_tokens = 1
        self.proj = nn.Linear(d_enc, d_llm)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features)


class MLPInputProjector(InputProjector):
    """``k`` LLM tokens per input: mean-pool the features, then a two-layer MLP to ``k * d_llm``."""

    def __init__(self, d_enc: int, d_llm: int, num_tokens: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        hidden = hidden_dim or d_llm
        self.mlp = nn.Sequential(nn.Linear(d_enc, hidden), nn.GELU(), nn.Linear(hidden, num_tokens * d_llm))
        self.d_llm = d_llm

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean(dim=1)
        return self.mlp(pooled).view(features.shape[0], self.num_tokens, self.d_llm)


def _per_part(spec: ConditionSpec, make: Callable[[ConditionPart], nn.Module]) -> nn.Module:
    """One module per condition part: the module itself for a one-part spec (so parameter names
    stay those of the released projectors), an `nn.ModuleDict` keyed by part name otherwise."""
    if len(spec.parts) == 1:
        return make(spec.parts[0])
    return nn.ModuleDict({part.name: make(part) for part in spec.parts})


def _part_module(modules: nn.Module, spec: ConditionSpec, part: ConditionPart) -> nn.Module:
    return modules if len(spec.parts) == 1 else modules[part.name]  # type: ignore[index]


class QueryTransformerProjector(OutputProjector):
    """NExT-GPT's output projection (after GILL's mapper), for any `ConditionSpec`.

    ``Linear(d_llm -> d_model)``, then ``nn.Transformer`` whose encoder reads the signal-token
    states and whose decoder reads learned queries, then one ``Linear(d_model -> d)`` per
    condition part. The queries are one group per part, in the spec's order (``Q`` for a
    sequence, 1 for a pooled vector), all rows of ``query_embs``; the groups attend to each other
    in the shared transformer. Sub-module names (``fc``, ``tfm``, ``query_embs``, ``model``)
    follow the released code; with several parts ``model`` is a dict keyed by part name.
    """

    def __init__(self, d_llm: int, condition_spec: ConditionSpec, config: OutputProjectorConfig) -> None:
        super().__init__()
        self.condition_spec = condition_spec
        self.fc = nn.Linear(d_llm, config.d_model)
        self.tfm = nn.Transformer(
            d_model=config.d_model,
            nhead=config.num_heads,
            num_encoder_layers=config.num_encoder_layers,
            num_decoder_layers=config.num_decoder_layers,
            dim_feedforward=config.dim_feedforward,
            dropout=config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.model = _per_part(condition_spec, lambda part: nn.Linear(config.d_model, part.width))
        total = sum(part.tokens for part in condition_spec.parts)
        self.query_embs = nn.Parameter(torch.randn(1, total, config.d_model))

    def forward(self, hidden: torch.Tensor) -> Condition:
        x = self.fc(hidden)
        queries = self.query_embs.expand(hidden.shape[0], -1, -1).to(x.dtype)
        out = self.tfm(x, queries)
        tensors = {}
        start = 0
        for part in self.condition_spec.parts:
            value = _part_module(self.model, self.condition_spec, part)(out[:, start : start + part.tokens])
            tensors[part.name] = value[:, 0] if part.pooled else value
            start += part.tokens
        return Condition(self.condition_spec, tensors)


class LinearOutputProjector(OutputProjector):
    """A light alternative: per condition part, ``Linear(d_llm -> d)`` per token, then a linear mix
    of the ``n_sig`` tokens into the part's ``Q`` positions (1 for a pooled vector)."""

    def __init__(self, d_llm: int, num_signal_tokens: int, condition_spec: ConditionSpec) -> None:
        super().__init__()
        self.condition_spec = condition_spec
        self.proj = _per_part(condition_spec, lambda part: nn.Linear(d_llm, part.width))
        self.mix = _per_part(condition_spec, lambda part: nn.Linear(num_signal_tokens, part.tokens))

    def forward(self, hidden: torch.Tensor) -> Condition:
        tensors = {}
        for part in self.condition_spec.parts:
            proj = _part_module(self.proj, self.condition_spec, part)
            mix = _part_module(self.mix, self.condition_spec, part)
            value = mix(proj(hidden).transpose(1, 2)).transpose(1, 2)
            tensors[part.name] = value[:, 0] if part.pooled else value
        return Condition(self.condition_spec, tensors)


def build_input_projector(config: InputProjectorConfig, d_enc: int, d_llm: int) -> InputProjector:
    if config.kind == "linear":
        return LinearInputProjector(d_enc, d_llm)
    return MLPInputProjector(d_enc, d_llm, config.num_tokens, config.hidden_dim)


def build_output_projector(
    config: OutputProjectorConfig, d_llm: int, num_signal_tokens: int, condition_spec: ConditionSpec
) -> OutputProjector:
    """The output projector ``config.kind`` asks for, producing conditions of ``condition_spec``."""
    if config.kind == "query_transformer":
        return QueryTransformerProjector(d_llm, condition_spec, config)
    return LinearOutputProjector(d_llm, num_signal_tokens, condition_spec)
