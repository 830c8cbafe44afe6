"""Named configurations: ``tiny`` (random, offline, seconds on a CPU), ``nextgpt-7b-v0`` (the
release), ``qwen2.5-7b`` (a current Apache-2.0 chat LLM at the centre) and ``open-7b`` (Qwen2.5-7B
with encoders and decoders that all permit commercial use).

A preset fixes the LLM and the generic settings; each enabled modality's part comes from its
plugin's config defaults, overridden by the plugin's own entry for the preset
(`ModalitySpec.presets`). So a preset never names a modality: every installed one takes part.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nextgpt.config import LLMConfig, LoraSettings, NextGPTConfig
from nextgpt.errors import ConfigError
from nextgpt.licences import LLAMA_1
from nextgpt.plugins import PluginRegistry
from nextgpt.suggest import hint, listing

VICUNA_V0_ENV = "NEXTGPT_VICUNA_7B_V0"
"""Folder of Vicuna-7B v0 (LLaMA-7B + the v0 delta applied); see the README."""

_TINY_PROJECTOR = {
    "d_model": 32,
    "num_heads": 2,
    "num_encoder_layers": 1,
    "num_decoder_layers": 1,
    "dim_feedforward": 64,
}


Preset = tuple[LLMConfig, dict[str, Any], tuple[str, ...] | None]
"""(LLM settings, generic per-modality settings, modalities in vocabulary order or None = all)."""


def _tiny(llm_source: str | None = None) -> Preset:
    llm = LLMConfig(
        source=llm_source or "tiny",
        template="auto",
        lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]),
        max_new_tokens=16,
    )
    return llm, {"output_projector": dict(_TINY_PROJECTOR)}, None


RELEASED_MODALITY_ORDER = ("image", "video", "audio")
"""The released checkpoint's vocabulary: <Img>, </Img>, [IMG0..3], [VID0..23], [AUD0..7]."""


def _nextgpt_7b_v0(llm_source: str | None = None) -> Preset:
    """The released NExT-GPT configuration (7b_tiva_v0), reproduced where it matters: token
    ids, prompt building (BOS before every text chunk, <Img>..</Img> around every media
    embedding, vicuna v0 turns, stop on ###), sampling defaults. Modality-specific details
    (e.g. audio features without ImageBind's x20 scale) come from each plugin's preset entry."""
    llm = LLMConfig(
        source=llm_source
        or _folder_from_env(VICUNA_V0_ENV, "nextgpt-7b-v0", "the Vicuna-7B v0 weights (LLaMA-7B with the v0 delta)"),
        template="vicuna_v0_legacy",
        licence=LLAMA_1,
        lora=LoraSettings(r=32, alpha=32, dropout=0.1),
        train_embeddings="full",
        dtype="float16",
        media_wrap=("<Img>", "</Img>"),
        bos_per_text_chunk=True,
        max_new_tokens=246,
        temperature=1.0,
        top_p=0.01,
    )
    return llm, {}, RELEASED_MODALITY_ORDER


QWEN2_5_7B_ENV = "NEXTGPT_QWEN2_5_7B"
"""Folder of Qwen2.5-7B-Instruct; unset, the preset names the hub id (read from the local hub
cache when offline)."""
QWEN2_5_7B_HUB_ID = "Qwen/Qwen2.5-7B-Instruct"


def _qwen2_5_7b(llm_source: str | None = None) -> Preset:
    """Qwen2.5-7B-Instruct (Apache-2.0) at the centre: its own chat template (``<|im_start|>``
    turns, stop on ``<|im_end|>`` and its generation_config EOS ids), LoRA as released
    NExT-GPT's (r 32, alpha 32, dropout 0.1 on q,k,v,o_proj), bf16 weights, and the model
    card's sampling (temperature 0.7, top_p 0.8). Modalities take their plugin defaults; the
    input projectors map ImageBind's 1024-d vectors to Qwen's 3584-d embeddings."""
    llm = LLMConfig(
        source=llm_source or os.environ.get(QWEN2_5_7B_ENV, "").strip() or QWEN2_5_7B_HUB_ID,
        template="auto",
        lora=LoraSettings(r=32, alpha=32, dropout=0.1, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
        dtype="bfloat16",
        max_new_tokens=512,
        temperature=0.7,
        top_p=0.8,
    )
    return llm, {}, None


def _folder_from_env(variable: str, preset: str, what: str) -> str:
    """The local folder named by ``variable``, checked before anything is loaded or downloaded."""
    value = os.environ.get(variable, "").strip()
    if not value:
        raise ConfigError(
            f"preset {preset!r} needs {what} in a local folder: set {variable}=/path/to/folder "
            "(README: 'Running the released NExT-GPT weights'), or load a converted model folder instead"
        )
    if not (Path(value).expanduser() / "config.json").is_file():
        raise ConfigError(f"{variable}={value}: not a folder with a Hugging Face model (no config.json)")
    return value


def _open_7b(llm_source: str | None = None) -> Preset:
    """A system whose every part permits commercial use: Qwen2.5-7B-Instruct (as ``qwen2.5-7b``)
    at the centre; each modality plugin's ``open-7b`` entry chooses encoders and decoders with
    such licences (SigLIP, CLAP; FLUX.1 [schnell], Stable Audio Open, CogVideoX-2B), and the
    preset builds under ``licence_policy: commercial`` (`COMMERCIAL_PRESETS`), so a plugin
    without such an entry is refused by name rather than slipped in."""
    return _qwen2_5_7b(llm_source)


PRESETS = {"tiny": _tiny, "nextgpt-7b-v0": _nextgpt_7b_v0, "qwen2.5-7b": _qwen2_5_7b, "open-7b": _open_7b}

COMMERCIAL_PRESETS = frozenset({"open-7b"})
"""Presets built under ``licence_policy: commercial``."""


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, recursing into nested dicts."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def preset_config(
    name: str,
    registry: PluginRegistry,
    modalities: Iterable[str] | None = None,
    seed: int = 13,
    llm_source: str | None = None,
) -> NextGPTConfig:
    """The configuration of preset ``name`` over the installed (or the named) modalities.

    ``llm_source`` replaces the preset's LLM; a preset whose LLM is a local folder named by an
    environment variable (``nextgpt-7b-v0``: `VICUNA_V0_ENV`) needs one or the other, and says
    so before anything is loaded."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}{hint(name, PRESETS)} (presets: {listing(PRESETS)})")
    llm, generic, order = PRESETS[name](llm_source)
    if modalities is not None:
        chosen = list(modalities)
    elif order is not None:
        chosen = list(order)
    else:
        chosen = sorted(registry.modalities)
    mods: dict[str, dict[str, Any]] = {}
    for modality in chosen:
        spec = registry.modality(modality)
        defaults = spec.config_model().model_dump()
        mods[modality] = deep_merge(deep_merge(defaults, generic), spec.presets.get(name, {}))
    policy = "commercial" if name in COMMERCIAL_PRESETS else "any"
    return NextGPTConfig(llm=llm, modalities=mods, seed=seed, licence_policy=policy)
