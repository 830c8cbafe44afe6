"""Convert the released NExT-GPT checkpoint into a folder `NextGPTModel.from_pretrained` loads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from nextgpt.config import LoraSettings
from nextgpt.dtypes import DTYPES, dtype_name, parse_dtype
from nextgpt.errors import ConfigError
from nextgpt.files import check_new_folder, file_problem
from nextgpt.legacy.checkpoint import (
    RELEASED_PROJECTORS,
    check_keys,
    infer_shape,
    merge_lora_into,
    normalise_keys,
    to_nextgpt_state,
)
from nextgpt.model_folder import write_pretrained
from nextgpt.paths import apply_default_mode
from nextgpt.plugins import PluginRegistry, default_registry
from nextgpt.presets import preset_config

PRESET = "nextgpt-7b-v0"


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Load ``pytorch_model.pt`` (a pickled dict of tensors; read with weights_only) or a
    safetensors file."""
    path = Path(path)
    problem = file_problem(path)
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a readable safetensors file (truncated or corrupt): {exc}") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return dict(state)


def convert_legacy(
    checkpoint: str | Path,
    vicuna: str | Path,
    imagebind: str,
    out: str | Path,
    merge_lora: bool = False,
    dtype: str | None = None,
    decoders: Mapping[str, str] | None = None,
    registry: PluginRegistry | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model folder for the release checkpoint.

    Args:
        checkpoint: the released ``pytorch_model.pt``.
        vicuna: folder of Vicuna-7B v0 (LLaMA-7B with the v0 delta applied), 32000-entry tokenizer.
        imagebind: ImageBind weights (``imagebind_huge.pth`` path, or ``imagebind_huge``).
        out: the folder to write.
        merge_lora: fold LoRA into the LLM (``W + B A``, scale alpha/r = 1) and write the merged
            LLM under ``out/llm``; otherwise LoRA stays separate and ``vicuna`` is referenced.
        dtype: ``float16`` / ``float32`` / ``bfloat16``; default keeps the checkpoint's.
        decoders: per-modality decoder sources overriding the release's hub ids.
        overwrite: write into ``out`` even if it already holds files (otherwise refused).

    Raises:
        ConfigError: any missing, unused or mis-shaped key (all listed by name), or a Vicuna
            tokenizer whose size does not give the checkpoint's vocabulary.
    """
    from transformers import AutoTokenizer

    registry = registry or default_registry()
    check_new_folder(Path(out), overwrite)
    state = normalise_keys(read_checkpoint(checkpoint))
    shape = infer_shape(state)
    check_keys(state, shape)
    vicuna = Path(vicuna)
    if not (vicuna / "config.json").exists():
        raise ConfigError(f"--vicuna {vicuna}: not a Hugging Face model folder (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(vicuna)
    modalities = [p.modality for p in RELEASED_PROJECTORS]
    config = preset_config(PRESET, registry, modalities, llm_source=str(vicuna.resolve()))
    added = 2 + sum(registry.modality(m).signal_tokens.count for m in modalities)
    if len(tokenizer) + added != shape.vocab:
        raise ConfigError(
            f"--vicuna {vicuna}: its tokenizer has {len(tokenizer)} entries; with the {added} added tokens "
            f"that gives {len(tokenizer) + added}, but the checkpoint has {shape.vocab} rows "
            "(the release expects Vicuna v0's 32000-entry tokenizer with no added tokens)"
        )
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    wanted = parse_dtype(dtype, "--dtype")

    out = Path(out)
    llm_source = str(vicuna.resolve())
    if merge_lora:
        llm_source = str(_write_merged_llm(vicuna, state, out / "llm", wanted))
    checkpoint_dtype = state["llama_proj.weight"].dtype
    target_dtype = wanted or checkpoint_dtype
    llm = config.llm.model_copy(
        update={
            "source": llm_source,
            "dtype": dtype_name(target_dtype) or "float16",
            "lora": None
            if merge_lora or not shape.lora_r
            else LoraSettings(r=shape.lora_r, alpha=shape.lora_r, dropout=0.1, target_modules=list(shape.lora_targets)),
        }
    )
    mods = {}
    for name in modalities:
        raw = dict(config.modalities[name])
        raw["encoder"] = {**raw["encoder"], "source": imagebind}
        if decoders and name in decoders:
            raw["decoder"] = {**raw["decoder"], "source": decoders[name]}
        raw["output_projector"] = shape.projector.model_dump()
        mods[name] = raw
    config = config.model_copy(update={"llm": llm, "modalities": mods})

    base = len(tokenizer)
    signal_ids, cursor = {}, base + 2
    for name in modalities:
        count = registry.modality(name).signal_tokens.count
        signal_ids[name] = list(range(cursor, cursor + count))
        cursor += count
    tensors = {k: v.to(target_dtype) for k, v in to_nextgpt_state(state, modalities, merge_lora).items()}
    tokens = {name: registry.modality(name).signal_tokens.tokens for name in modalities}
    return write_pretrained(out, config, tokens, signal_ids, tensors)


def _write_merged_llm(vicuna: Path, state: Mapping[str, torch.Tensor], target: Path, dtype: torch.dtype | None) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(vicuna, dtype=dtype or torch.float16)
    merge_lora_into(model, state, scale=1.0)  # the release used alpha = r
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(vicuna).save_pretrained(target)
    apply_default_mode(target)  # safetensors writes its files 0600
    return target
