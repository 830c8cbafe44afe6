"""Loading the language model, extending its vocabulary with signal tokens, and LoRA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nextgpt.config import LLMConfig, QuantizationSettings
from nextgpt.dtypes import parse_dtype
from nextgpt.errors import ConfigError
from nextgpt.hub import looks_like_path


def resolve_llm_source(source: str) -> str:
    """``"tiny"`` -> the materialised tiny folder; anything else unchanged (path or hub id)."""
    if source == "tiny":
        from nextgpt.tiny.llm import tiny_llm_path

        return str(tiny_llm_path())
    return source


def load_llm(
    config: LLMConfig, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[nn.Module, Any]:
    """Load a Hugging Face causal LM and its tokenizer from a local folder or a hub id.

    Args:
        config: the LLM settings (``source``, ``dtype``, ``quantization``).
        device: where the weights go; transformers loads them straight there (``device_map``),
            with no full copy on the CPU first. None: the CPU.
        dtype: the weights' dtype, instead of ``config.dtype``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_llm_source(config.source)
    looks_local = looks_like_path(source)
    if looks_local and not (Path(source).expanduser() / "config.json").exists():
        raise ConfigError(f"llm.source: {source!r} is not a folder with a Hugging Face model (no config.json)")
    load: dict[str, Any] = {"dtype": dtype or parse_dtype(config.dtype, "llm.dtype")}
    if config.quantization is not None:
        load.update(quantization_kwargs(config.quantization, device))
    elif device is not None and device.type != "cpu":
        load["device_map"] = {"": device}
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per tiny shard is noise; big loads print their own logs
    if not looks_local:
        from nextgpt.hub import prepare_hub_source

        load["local_files_only"] = prepare_hub_source(source, "config.json", "llm.source")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=load.get("local_files_only", False))
        model = AutoModelForCausalLM.from_pretrained(source, **load)
    except OSError as exc:
        raise ConfigError(f"llm.source: cannot load {source!r}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    for param in model.parameters():
        param.requires_grad_(False)
    return model, tokenizer


def quantization_kwargs(settings: QuantizationSettings, device: torch.device | None) -> dict[str, Any]:
    """``from_pretrained`` arguments that load the LLM in ``settings.bits`` bits: transformers'
    ``BitsAndBytesConfig`` and a ``device_map`` onto ``device`` (bitsandbytes quantises on a
    CUDA GPU). Checked before anything loads.

    Raises:
        ConfigError: bitsandbytes is not installed, or ``device`` is not a CUDA GPU (naming
            ``llm.quantization``).
    """
    from importlib.util import find_spec

    from transformers import BitsAndBytesConfig

    where = f"llm.quantization ({settings.bits}-bit)"
    if device is None or device.type != "cuda":
        raise ConfigError(
            f"{where}: bitsandbytes quantises on a CUDA GPU, and the model is placed on "
            f"{device or 'the CPU'}; give --device cuda (or device='cuda'), or leave llm.quantization unset"
        )
    if find_spec("bitsandbytes") is None:
        raise ConfigError(f'{where}: needs the bitsandbytes package: pip install "nextgpt-core[quantization]"')
    if settings.bits == 8:
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=settings.quant_type,
            bnb_4bit_use_double_quant=settings.double_quant,
            bnb_4bit_compute_dtype=parse_dtype(settings.compute_dtype),
        )
    return {"quantization_config": config, "device_map": {"": device}}


def prepare_for_quantized_training(model: nn.Module) -> nn.Module:
    """QLoRA's preparation of a quantised LLM before LoRA goes on it (peft's
    ``prepare_model_for_kbit_training``: norms in float32, input gradients enabled so LoRA
    gradients flow through the frozen quantised layers)."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


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


class SignalRows(nn.Module):
    """A parametrization of an embedding matrix (``torch.nn.utils.parametrize``): the signal
    tokens' rows are this module's own parameter ``rows``, every other row the frozen matrix.

    ``train_embeddings="new_rows"``: only ``rows`` trains, so gradients and optimizer state are
    the size of the signal rows, not of the vocabulary, and every other row keeps its
    pretrained value bit for bit. The input embedding and the lm_head get one each (one shared
    instance when they are tied)."""

    def __init__(self, weight: torch.Tensor, row_ids: list[int]) -> None:
        super().__init__()
        self.register_buffer("row_ids", torch.tensor(row_ids, dtype=torch.long), persistent=False)
        self.rows = nn.Parameter(weight.detach()[row_ids].clone())

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original.index_copy(0, self.row_ids, self.rows.to(original.dtype))


def _embedding_owners(model: nn.Module) -> list[nn.Module]:
    """The modules holding the input embedding and (when untied) the lm_head weight."""
    inp = model.get_input_embeddings()
    out = model.get_output_embeddings()
    owners = [inp]
    if out is not None and out is not inp:
        owners.append(out)
    return owners


def attach_signal_rows(model: nn.Module, row_ids: list[int]) -> list[nn.Parameter]:
    """Parametrize the embedding and lm_head so only ``row_ids`` train; returns the new
    trainable parameters (one per distinct matrix)."""
    from torch.nn.utils import parametrize

    by_matrix: dict[int, SignalRows] = {}
    for owner in _embedding_owners(model):
        if parametrize.is_parametrized(owner, "weight"):
            raise ConfigError("signal rows are already attached to the LLM's embeddings")
        weight = owner.weight
        rows = by_matrix.setdefault(id(weight), SignalRows(weight, row_ids).to(weight.device))
        parametrize.register_parametrization(owner, "weight", rows)
    return [rows.rows for rows in by_matrix.values()]


def detach_signal_rows(model: nn.Module) -> None:
    """Undo `attach_signal_rows`, writing the trained rows into the matrices."""
    from torch.nn.utils import parametrize

    for owner in _embedding_owners(model):
        if parametrize.is_parametrized(owner, "weight"):
            parametrize.remove_parametrizations(owner, "weight", leave_parametrized=True)


def signal_row_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable ``rows`` of attached `SignalRows` (none when not attached)."""
    found: dict[int, nn.Parameter] = {}
    for owner in _embedding_owners(model):
        for rows in getattr(getattr(owner, "parametrizations", None), "weight", []):
            if isinstance(rows, SignalRows):
                found[id(rows.rows)] = rows.rows
    return list(found.values())


def write_embedding_rows(owner: nn.Module, row_ids: list[int], values: torch.Tensor) -> None:
    """Set rows ``row_ids`` of ``owner.weight`` to ``values``, through `SignalRows` when
    attached (its ``weight`` is then computed, and writing into it would be lost)."""
    with torch.no_grad():
        for rows in getattr(getattr(owner, "parametrizations", None), "weight", []):
            if isinstance(rows, SignalRows):
                order = {int(r): k for k, r in enumerate(rows.row_ids.tolist())}
                index = torch.tensor([order[r] for r in row_ids], device=rows.rows.device)
                rows.rows[index] = values.to(rows.rows.device, rows.rows.dtype)
                return
        owner.weight[torch.tensor(row_ids, device=owner.weight.device)] = values.to(
            owner.weight.device, owner.weight.dtype
        )


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
