"""Loading the language model, extending its vocabulary with signal tokens, and LoRA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nextgpt.config import LLMConfig
from nextgpt.errors import ConfigError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_llm_source(source: str) -> str:
    """``"tiny"`` -> the materialised tiny folder; anything else unchanged (path or hub id)."""
    if source == "tiny":
        from nextgpt.tiny.llm import tiny_llm_path

        return str(tiny_llm_path())
    return source


def load_llm(config: LLMConfig) -> tuple[nn.Module, Any]:
    """Load a Hugging Face causal LM and its tokenizer from a local folder or a hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_llm_source(config.source)
    looks_local = source.startswith((".", "/", "~")) or Path(source).expanduser().exists()
    if looks_local and not (Path(source).expanduser() / "config.json").exists():
        raise ConfigError(f"llm.source: {source!r} is not a folder with a Hugging Face model (no config.json)")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per tiny shard is noise; big loads print their own logs
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[config.dtype])
    except OSError as exc:
        raise ConfigError(f"llm.source: cannot load {source!r}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    for param in model.parameters():
        param.requires_grad_(False)
    return model, tokenizer


def add_signal_tokens(model: nn.Module, tokenizer: Any, tokens: list[str]) -> list[int]:
    """Add ``tokens`` to the tokenizer and grow the embedding and lm_head.

    New rows start at the mean of the existing rows (as the 2024 NExT-GPT code does), which
    keeps the LM's output distribution sane before any training. Returns the new ids in order.
    """
    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    base_rows = model.get_input_embeddings().weight.shape[0]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    new_size = len(tokenizer)
    if new_size > base_rows:
        model.resize_token_embeddings(new_size, mean_resizing=False)
        with torch.no_grad():
            for emb in _embedding_matrices(model):
                emb[base_rows:] = emb[:base_rows].mean(dim=0, keepdim=True)
    return [int(tokenizer.convert_tokens_to_ids(t)) for t in tokens]


def _embedding_matrices(model: nn.Module) -> list[torch.Tensor]:
    inp = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    mats = [inp]
    if out is not None and out.weight.data_ptr() != inp.data_ptr():
        mats.append(out.weight)
    return mats


class RowGradientMask:
    """Lets only some rows of the embedding and lm_head learn (a gradient hook).

    ``train_embeddings="new_rows"``: the signal-token rows train, every other row keeps its
    pretrained value bit for bit (weight decay aside, which callers keep off for these).
    """

    def __init__(self, model: nn.Module, rows: list[int]) -> None:
        self.rows = sorted(rows)
        self.handles = []
        for weight in _embedding_matrices(model):
            mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
            mask[self.rows] = 1
            weight.requires_grad_(True)
            self.handles.append(weight.register_hook(lambda grad, mask=mask: grad * mask.to(grad.device, grad.dtype)))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def apply_lora(model: nn.Module, config: LLMConfig) -> nn.Module:
    """Wrap the LLM with peft LoRA adapters (only the adapters are trainable)."""
    from peft import LoraConfig, get_peft_model

    assert config.lora is not None
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def base_model(model: nn.Module) -> nn.Module:
    """The underlying transformers model, unwrapping peft if present."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model
