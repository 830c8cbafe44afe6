"""Trainable projections between the frozen parts: encoder -> LLM and LLM -> decoder."""

from __future__ import annotations

import torch
from torch import nn

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


class QueryTransformerProjector(OutputProjector):
    """NExT-GPT's output projection (after GILL's mapper).

    ``Linear(d_llm -> d_model)``, then ``nn.Transformer`` whose encoder reads the signal-token
    states and whose decoder reads ``Q`` learned queries, then ``Linear(d_model -> d_out)``.
    Sub-module names (``fc``, ``tfm``, ``query_embs``, ``model``) follow the released code.
    """

    def __init__(self, d_llm: int, condition_shape: tuple[int, int], config: OutputProjectorConfig) -> None:
        super().__init__()
        num_queries, d_out = condition_shape
        self.condition_shape = (num_queries, d_out)
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
        self.model = nn.Linear(config.d_model, d_out)
        self.query_embs = nn.Parameter(torch.randn(1, num_queries, config.d_model))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.fc(hidden)
        queries = self.query_embs.expand(hidden.shape[0], -1, -1).to(x.dtype)
        return self.model(self.tfm(x, queries))


class LinearOutputProjector(OutputProjector):
    """A light alternative: ``Linear(d_llm -> d_out)`` per token, then a linear mix of the
    ``n_sig`` tokens into ``Q`` condition positions."""

    def __init__(self, d_llm: int, num_signal_tokens: int, condition_shape: tuple[int, int]) -> None:
        super().__init__()
        num_queries, d_out = condition_shape
        self.condition_shape = (num_queries, d_out)
        self.proj = nn.Linear(d_llm, d_out)
        self.mix = nn.Linear(num_signal_tokens, num_queries)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mix(self.proj(hidden).transpose(1, 2)).transpose(1, 2)


def build_input_projector(config: InputProjectorConfig, d_enc: int, d_llm: int) -> InputProjector:
    if config.kind == "linear":
        return LinearInputProjector(d_enc, d_llm)
    return MLPInputProjector(d_enc, d_llm, config.num_tokens, config.hidden_dim)


def build_output_projector(
    config: OutputProjectorConfig, d_llm: int, num_signal_tokens: int, condition_shape: tuple[int, int]
) -> OutputProjector:
    if config.kind == "query_transformer":
        return QueryTransformerProjector(d_llm, condition_shape, config)
    return LinearOutputProjector(d_llm, num_signal_tokens, condition_shape)
