"""The memory plan: how many parameters each component of a configured model holds, in which
dtype, on which device, and how many bytes that takes, computed before anything is loaded.

Every figure comes from the configurations, with the networks built on meta tensors (no weight
read, no download): the LLM from its ``config.json``, each encoder from its backend's `plan`
(`nextgpt.interfaces.EncoderBackend.plan`) or built with empty weights, each decoder from
`Decoder.parameter_counts`, the projectors and LoRA adapters built as the model builds them.
The bytes are the weights' only: activations, the KV cache and the CUDA context come on top.
``nextgpt chat --dry-run`` (and every command that builds a model) prints the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from nextgpt.config import NextGPTConfig, QuantizationSettings
from nextgpt.dtypes import dtype_name, parse_dtype
from nextgpt.errors import NextGPTError
from nextgpt.plugins import PluginRegistry, default_registry

GIB = 1024**3


@dataclass(frozen=True)
class PlanRow:
    """One component of the plan."""

    component: str
    parameters: int | None
    """None: not known without loading (the row says why in ``note``)."""
    dtype: str
    device: str
    bytes: float | None
    note: str = ""


@dataclass
class MemoryPlan:
    """The rows of a plan and their totals per device."""

    rows: list[PlanRow] = field(default_factory=list)

    def totals(self) -> dict[str, float]:
        """Bytes per device (offloaded parts count on ``cpu``)."""
        out: dict[str, float] = {}
        for row in self.rows:
            if row.bytes is not None:
                out[row.device] = out.get(row.device, 0.0) + row.bytes
        return out

    def table(self) -> str:
        from nextgpt.tables import format_table

        body = [
            (
                row.component,
                "?" if row.parameters is None else human_count(row.parameters),
                row.dtype,
                row.device,
                "?" if row.bytes is None else human_bytes(row.bytes),
                row.note,
            )
            for row in self.rows
        ]
        for device, size in self.totals().items():
            body.append((f"total on {device}", "", "", device, human_bytes(size), "weights only"))
        return "memory plan (weights, computed on meta tensors; nothing loaded)\n" + format_table(
            ("component", "parameters", "dtype", "device", "memory", "note"), body
        )


def human_count(count: int) -> str:
    """``6_738_415_616`` -> ``6.74 B``; ``1_792`` -> ``1,792``."""
    if count >= 1e9:
        return f"{count / 1e9:.2f} B"
    if count >= 1e6:
        return f"{count / 1e6:.1f} M"
    return f"{count:,}"


def human_bytes(size: float) -> str:
    """Bytes in GiB, MiB or KiB, whichever reads best."""
    for unit, scale in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size:.0f} B"


def bytes_per_parameter(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def memory_plan(
    config: NextGPTConfig,
    registry: PluginRegistry | None = None,
    *,
    device: torch.device | None = None,
    torch_dtype: torch.dtype | None = None,
) -> MemoryPlan:
    """The plan of the model ``NextGPTModel(config, device=device, torch_dtype=torch_dtype)``
    would build, computed from the configurations alone.

    Args:
        config: the model's configuration (`nextgpt.overrides.planned_config` gives the one a
            command's ``--model``, ``--config`` and ``--set`` name).
        registry: the plugins (default: the installed ones).
        device: where the model would go (default: the CPU).
        torch_dtype: the frozen parts' dtype instead of ``llm.dtype`` (as ``from_pretrained``).
    """
    registry = registry or default_registry()
    where = str(device or torch.device("cpu"))
    frozen = torch_dtype or torch.float32
    plan = MemoryPlan()
    llm_dtype = torch_dtype or parse_dtype(config.llm.dtype, "llm.dtype") or torch.float32
    extra_tokens = len(config.llm.media_wrap or ())
    d_llm, matrices = _plan_llm(plan, config, llm_dtype, where)
    shared: dict[str, str] = {}
    """Encoder identity -> the row that counts it (one ImageBind serves several modalities)."""
    for name, raw in config.modalities.items():
        spec = registry.modality(name)
        cfg = spec.validate_config(raw)
        count = cfg.signal_tokens or spec.signal_tokens.count
        extra_tokens += count
        encoder_dim = _plan_encoder(plan, registry, name, cfg, frozen, where, shared)
        if encoder_dim is not None:
            _add_module(plan, f"{name} input projector", _input_projector(cfg, encoder_dim, d_llm), where)
        if cfg.decoder is not None:
            decoder = registry.decoder_backend(name, cfg.decoder.backend).build(
                cfg.decoder.source, **cfg.decoder.options
            )
            _plan_decoder(plan, name, cfg.decoder.backend, decoder, cfg.decoder.options, frozen, where)
            try:
                projector = _output_projector(cfg, d_llm, count, decoder)
            except (NextGPTError, OSError) as exc:  # its condition is read from configs not at hand
                note = f"size not known: {type(exc).__name__}"
                plan.rows.append(PlanRow(f"{name} output projector", None, "float32", where, None, note))
            else:
                _add_module(plan, f"{name} output projector", projector, where)
    rows = extra_tokens * d_llm * matrices
    what = "embedding and lm_head rows" if matrices == 2 else "rows of the tied embedding"
    plan.rows.insert(
        1,
        PlanRow(
            "llm: signal-token rows",
            rows,
            dtype_name(llm_dtype) or str(llm_dtype),
            where,
            rows * 1.0 * _size(llm_dtype),
            f"{extra_tokens} new tokens ({what})",
        ),
    )
    return plan


def _plan_llm(plan: MemoryPlan, config: NextGPTConfig, dtype: torch.dtype, where: str) -> tuple[int, int]:
    """LLM and LoRA rows; returns the LLM's hidden size and how many matrices (embedding,
    lm_head) the new tokens' rows grow: 1 when they are tied."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from nextgpt.llm import resolve_llm_source

    hf_config = AutoConfig.from_pretrained(resolve_llm_source(config.llm.source))
    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(hf_config)
    total = sum(p.numel() for p in llm.parameters())
    quant = config.llm.quantization
    if quant is None:
        plan.rows.append(
            PlanRow(
                f"llm ({config.llm.source})", total, dtype_name(dtype) or str(dtype), where, total * 1.0 * _size(dtype)
            )
        )
    else:
        size, note = _quantized_bytes(llm, quant, dtype)
        plan.rows.append(PlanRow(f"llm ({config.llm.source})", total, f"{quant.bits}-bit", where, size, note))
    if config.llm.lora is not None:
        lora = config.llm.lora
        targets = set(lora.target_modules)
        adapters = sum(
            lora.r * (module.in_features + module.out_features)
            for name, module in llm.named_modules()
            if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets
        )
        plan.rows.append(PlanRow("llm: LoRA adapters", adapters, "float32", where, adapters * 4.0, f"r={lora.r}"))
    text_config = hf_config.get_text_config()
    return int(text_config.hidden_size), 1 if getattr(text_config, "tie_word_embeddings", False) else 2


def _quantized_bytes(llm: nn.Module, quant: QuantizationSettings, dtype: torch.dtype) -> tuple[float, str]:
    """Bytes of the LLM loaded through bitsandbytes: every linear layer but the lm_head in
    ``quant.bits`` bits plus its quantisation constants; the rest (embeddings, norms, lm_head)
    in ``dtype``."""
    output = llm.get_output_embeddings()
    linear = [m for m in llm.modules() if isinstance(m, nn.Linear) and m is not output]
    quantised = sum(m.weight.numel() for m in linear)
    rest = sum(p.numel() for p in llm.parameters()) - quantised
    if quant.bits == 8:  # int8 weights and one float32 scale per output row
        weights = quantised + 4.0 * sum(m.out_features for m in linear)
        note = "LLM.int8 linear layers"
    else:  # 4 bits, an absmax per block of 64 (8-bit with double quantisation, else float32)
        per_block = 1.0 + 4.0 / 256 if quant.double_quant else 4.0
        weights = quantised * 0.5 + quantised / 64 * per_block
        note = f"{quant.quant_type} linear layers"
    return weights + rest * _size(dtype), note


def _plan_encoder(
    plan: MemoryPlan, registry: PluginRegistry, name: str, cfg, dtype: torch.dtype, where: str, shared: dict[str, str]
) -> int | None:
    """The encoder's row (a network several modalities share is counted once); returns its
    feature width."""
    backend = registry.encoder_backend(name, cfg.encoder.backend)
    if backend.plan is not None:
        found = backend.plan(cfg.encoder.source, **cfg.encoder.options)
        identity, parameters, dim = found.identity, found.parameters, found.dim
    else:
        from accelerate import init_empty_weights

        from nextgpt.shared import SharedModels

        with init_empty_weights():
            encoder = backend.build(cfg.encoder.source, SharedModels(), **cfg.encoder.options)
        identity = f"{cfg.encoder.backend}:{cfg.encoder.source}:{name}"
        parameters, dim = sum(p.numel() for p in encoder.parameters()), int(encoder.dim)
    component = f"{name} encoder ({cfg.encoder.backend})"
    if identity in shared:
        plan.rows.append(PlanRow(component, 0, "", where, 0.0, f"the {shared[identity]}'s network, counted there"))
    else:
        shared[identity] = component
        size = parameters * 1.0 * _size(dtype)
        plan.rows.append(PlanRow(component, parameters, dtype_name(dtype) or str(dtype), where, size))
    return dim


def _plan_decoder(
    plan: MemoryPlan, name: str, backend: str, decoder, options: dict, dtype: torch.dtype, where: str
) -> None:
    decoder_dtype = parse_dtype(options.get("dtype")) if options.get("dtype") else dtype
    offload = options.get("offload")
    device = "cpu" if offload else where
    note = f"offload={offload}: on {where} one network at a time" if offload else "loads when first used"
    counts = decoder.parameter_counts()
    if counts is None:
        plan.rows.append(
            PlanRow(f"{name} decoder ({backend})", None, "", device, None, "size not known before loading")
        )
        return
    for part, parameters in counts.items():
        plan.rows.append(
            PlanRow(
                f"{name} decoder ({backend}): {part}",
                parameters,
                dtype_name(decoder_dtype) or str(decoder_dtype),
                device,
                parameters * 1.0 * _size(decoder_dtype),
                note,
            )
        )


def _input_projector(cfg, encoder_dim: int, d_llm: int) -> nn.Module:
    from nextgpt.projectors import build_input_projector

    with torch.device("meta"):
        return build_input_projector(cfg.input_projector, encoder_dim, d_llm)


def _output_projector(cfg, d_llm: int, count: int, decoder) -> nn.Module:
    from nextgpt.projectors import build_output_projector

    with torch.device("meta"):
        return build_output_projector(cfg.output_projector, d_llm, count, decoder.condition_spec)


def _add_module(plan: MemoryPlan, component: str, module: nn.Module, where: str) -> None:
    parameters = sum(p.numel() for p in module.parameters())
    plan.rows.append(PlanRow(component, parameters, "float32", where, parameters * 4.0, "trained"))


def _size(dtype: torch.dtype) -> int:
    return bytes_per_parameter(dtype)


__all__: Sequence[str] = ["MemoryPlan", "PlanRow", "memory_plan"]
