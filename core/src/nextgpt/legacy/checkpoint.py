"""The released NExT-GPT checkpoint (``7b_tiva_v0``): its key structure and the mapping to ours.

The release saved one ``pytorch_model.pt`` with every parameter that was trainable in stage 3
(peft 0.3.0 names with the adapter name ``.default.``), ``llama_proj`` (one input projection
shared by every modality) and three ``gen_text_hidden_fcs*`` output projectors (``TextFcLayer``:
``fc``, ``tfm`` = ``nn.Transformer``, ``model``, ``query_embs``), plus the 32038-row embedding
and lm_head. This module describes that format; it is data about a file, not modality logic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from nextgpt.config import OutputProjectorConfig
from nextgpt.errors import ConfigError


@dataclass(frozen=True)
class ReleasedProjector:
    """One output projector of the release: the modality it serves and its key prefix."""

    modality: str
    prefix: str
    num_queries: int
    d_out: int


RELEASED_PROJECTORS = (
    ReleasedProjector("image", "gen_text_hidden_fcs.0", 77, 768),
    ReleasedProjector("video", "gen_text_hidden_fcs_video.0", 77, 1024),
    ReleasedProjector("audio", "gen_text_hidden_fcs_audio.0", 1, 512),
)
LLM_PREFIX = "llama_model.base_model.model."
STAGE12_ALIASES = {  # stage-1/2 checkpoints had no peft wrapper (agent.py load_parameters)
    "llama_model.model.embed_tokens.weight": LLM_PREFIX + "model.embed_tokens.weight",
    "llama_model.lm_head.weight": LLM_PREFIX + "lm_head.weight",
}
LORA_KEY = re.compile(
    r"^llama_model\.base_model\.model\.(model\.layers\.\d+\.self_attn\.[qkvo]_proj)\.lora_([AB])\.default\.weight$"
)
RELEASED_HEADS = 4
"""Attention heads of the released projectors (not recoverable from packed in_proj weights)."""


@dataclass(frozen=True)
class LegacyShape:
    """Sizes of a release-format checkpoint, read from its tensors."""

    vocab: int
    hidden: int
    num_layers: int
    lora_r: int
    lora_targets: tuple[str, ...]
    encoder_dim: int
    projector: OutputProjectorConfig
    condition_shapes: dict[str, tuple[int, int]]


def normalise_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename stage-1/2 LLM keys to their stage-3 (peft) form, as the release's loader did."""
    return {STAGE12_ALIASES.get(k, k): v for k, v in state.items()}


def infer_shape(state: Mapping[str, torch.Tensor]) -> LegacyShape:
    """Read the checkpoint's sizes from its tensors (the release is 32 layers, 4096 wide)."""
    embed = _need(state, LLM_PREFIX + "model.embed_tokens.weight")
    proj = _need(state, "llama_proj.weight")
    lora = [LORA_KEY.match(k) for k in state]
    layers = {int(re.search(r"layers\.(\d+)", m.group(1)).group(1)) for m in lora if m}  # type: ignore[union-attr]
    targets = sorted({m.group(1).rsplit(".", 1)[1] for m in lora if m})
    ranks = {state[m.string].shape[0] for m in lora if m and m.group(2) == "A"}
    if len(ranks) > 1:
        raise ConfigError(f"LoRA ranks differ between layers: {sorted(ranks)}")
    first = RELEASED_PROJECTORS[0].prefix
    d_model = _need(state, f"{first}.fc.weight").shape[0]
    ffn = _need(state, f"{first}.tfm.encoder.layers.0.linear1.weight").shape[0]
    enc_layers = len({k.split(".")[5] for k in state if k.startswith(f"{first}.tfm.encoder.layers.")})
    dec_layers = len({k.split(".")[5] for k in state if k.startswith(f"{first}.tfm.decoder.layers.")})
    projector = OutputProjectorConfig(
        kind="query_transformer",
        d_model=d_model,
        num_heads=RELEASED_HEADS,
        num_encoder_layers=enc_layers,
        num_decoder_layers=dec_layers,
        dim_feedforward=ffn,
        dropout=0.0,
        add_token_embeddings=True,
    )
    shapes = {}
    for p in RELEASED_PROJECTORS:
        queries = _need(state, f"{p.prefix}.query_embs")
        shapes[p.modality] = (int(queries.shape[1]), int(_need(state, f"{p.prefix}.model.weight").shape[0]))
    return LegacyShape(
        vocab=int(embed.shape[0]),
        hidden=int(embed.shape[1]),
        num_layers=len(layers),
        lora_r=ranks.pop() if ranks else 0,
        lora_targets=tuple(targets),
        encoder_dim=int(proj.shape[1]),
        projector=projector,
        condition_shapes=shapes,
    )


def _need(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise ConfigError(f"not a NExT-GPT release checkpoint: missing key {key!r}")
    return state[key]


def legacy_manifest(shape: LegacyShape) -> dict[str, tuple[int, ...]]:
    """Every key and shape a release-format checkpoint of ``shape`` holds (meta tensors only)."""
    from nextgpt.conditions import ConditionSpec
    from nextgpt.projectors import QueryTransformerProjector

    keys: dict[str, tuple[int, ...]] = {
        LLM_PREFIX + "model.embed_tokens.weight": (shape.vocab, shape.hidden),
        LLM_PREFIX + "lm_head.weight": (shape.vocab, shape.hidden),
        "llama_proj.weight": (shape.hidden, shape.encoder_dim),
        "llama_proj.bias": (shape.hidden,),
    }
    for layer in range(shape.num_layers):
        for target in shape.lora_targets:
            base = f"{LLM_PREFIX}model.layers.{layer}.self_attn.{target}"
            keys[f"{base}.lora_A.default.weight"] = (shape.lora_r, shape.hidden)
            keys[f"{base}.lora_B.default.weight"] = (shape.hidden, shape.lora_r)
    with torch.device("meta"):
        for p in RELEASED_PROJECTORS:
            # A one-part condition: (Q, d) and a pooled (d,) with Q = 1 give the same tensors.
            spec = ConditionSpec.sequence(*shape.condition_shapes[p.modality])
            module = QueryTransformerProjector(shape.hidden, spec, shape.projector)
            for key, tensor in module.state_dict().items():
                keys[f"{p.prefix}.{key}"] = tuple(tensor.shape)
    return keys


def released_shape() -> LegacyShape:
    """The sizes of the public 7b_tiva_v0 release (Vicuna-7B, ImageBind-huge, LoRA r=32)."""
    return LegacyShape(
        vocab=32038,
        hidden=4096,
        num_layers=32,
        lora_r=32,
        lora_targets=("k_proj", "o_proj", "q_proj", "v_proj"),
        encoder_dim=1024,
        projector=OutputProjectorConfig(),
        condition_shapes={p.modality: (p.num_queries, p.d_out) for p in RELEASED_PROJECTORS},
    )


def check_keys(state: Mapping[str, torch.Tensor], shape: LegacyShape) -> None:
    """Every key of the release format present with its shape, and nothing else; else a
    `ConfigError` listing the missing, unused and mis-shaped keys by name."""
    manifest = legacy_manifest(shape)
    missing = sorted(set(manifest) - set(state))
    unused = sorted(set(state) - set(manifest))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} != {manifest[k]}"
        for k in set(manifest) & set(state)
        if tuple(state[k].shape) != manifest[k]
    )
    if missing or unused or wrong:
        lines = [f"missing: {k}" for k in missing] + [f"unused: {k}" for k in unused] + [f"shape: {w}" for w in wrong]
        raise ConfigError("the checkpoint does not match the NExT-GPT release format:\n  " + "\n  ".join(lines))


def to_nextgpt_state(
    state: Mapping[str, torch.Tensor], modalities: list[str], merge_lora: bool
) -> dict[str, torch.Tensor]:
    """Map release keys to `NextGPTModel.trainable_state_dict` keys (``train_embeddings="full"``).

    ``llama_proj`` is copied to each modality's input projector (the release shared one);
    with ``merge_lora`` the LoRA tensors are left out (the caller folds them into the LLM).
    """
    out: dict[str, torch.Tensor] = {
        "llm.embed_tokens": state[LLM_PREFIX + "model.embed_tokens.weight"],
        "llm.lm_head": state[LLM_PREFIX + "lm_head.weight"],
    }
    for modality in modalities:
        out[f"input_projectors.{modality}.proj.weight"] = state["llama_proj.weight"].clone()
        out[f"input_projectors.{modality}.proj.bias"] = state["llama_proj.bias"].clone()
    for p in RELEASED_PROJECTORS:
        for key, value in state.items():
            if key.startswith(p.prefix + "."):
                out[f"output_projectors.{p.modality}.{key[len(p.prefix) + 1 :]}"] = value
    if not merge_lora:
        for key, value in state.items():
            match = LORA_KEY.match(key)
            if match:
                out[f"llm.lora.base_model.model.{match.group(1)}.lora_{match.group(2)}.weight"] = value
    return out


def merge_lora_into(llm: torch.nn.Module, state: Mapping[str, torch.Tensor], scale: float) -> None:
    """Fold ``W += scale * B @ A`` into a plain (un-wrapped) transformers LLM, in place."""
    params = dict(llm.named_parameters())
    with torch.no_grad():
        for key, a in state.items():
            match = LORA_KEY.match(key)
            if not match or match.group(2) != "A":
                continue
            b = state[key.replace("lora_A", "lora_B")]
            weight = params[f"{match.group(1)}.weight"]
            weight += (scale * (b.float() @ a.float())).to(weight.dtype)
