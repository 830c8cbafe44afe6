"""Tiny random text encoders for the tiny diffusers pipelines: CLIP (Stable Diffusion, zeroscope,
Shap-E) and T5 (PixArt, Stable Audio)."""

from __future__ import annotations

from typing import Any


def tiny_clip_text_encoder(
    tokenizer: Any, hidden_size: int, intermediate_size: int, with_projection: bool = False, **config: Any
) -> Any:
    """A 2-layer, 4-head `CLIPTextModel` (or `CLIPTextModelWithProjection`, as Shap-E uses)
    sized for ``tokenizer`` (vocabulary 1000, context = the tokenizer's ``model_max_length``);
    ``config`` overrides other `CLIPTextConfig` fields."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    settings = {
        "vocab_size": 1000,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "max_position_embeddings": tokenizer.model_max_length,
        "projection_dim": hidden_size,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    settings.update(config)
    model_class = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return model_class(CLIPTextConfig(**settings))


def tiny_t5_encoder(tokenizer: Any, d_model: int, **config: Any) -> Any:
    """A 2-layer, 2-head `T5EncoderModel` of width ``d_model`` sized for ``tokenizer``; ``config``
    overrides other `T5Config` fields."""
    from transformers import T5Config, T5EncoderModel

    settings = {
        "vocab_size": len(tokenizer),
        "d_model": d_model,
        "d_kv": max(1, d_model // 2),
        "d_ff": 2 * d_model,
        "num_layers": 2,
        "num_heads": 2,
        "relative_attention_num_buckets": 8,
        "dropout_rate": 0.0,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    settings.update(config)
    return T5EncoderModel(T5Config(**settings))
