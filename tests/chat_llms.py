"""Tiny random chat LLMs of three current families, built from configs for the template tests.

Each family gets the tiny byte-level BPE tokenizer plus that family's special tokens and a chat
template written in its format (Llama-3 headers, Qwen2 ``<|im_start|>`` blocks with a default
system prompt, Mistral ``[INST]``), a model of its architecture (LlamaConfig with Llama-3 rope,
Qwen2Config, MistralConfig) and a ``generation_config`` whose EOS ids name the end-of-turn token
as the real checkpoints do. Folders are written once per test home and loaded like a download.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

FAMILIES = ("llama3", "qwen2", "mistral")
VERSION = "chat-llms-v1"

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
QWEN2_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('system messages are not supported') }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
)

SPECIALS: dict[str, dict[str, Any]] = {
    "llama3": {
        "tokens": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "bos": "<|begin_of_text|>",
        "eos": "<|end_of_text|>",
        "generation_eos": ["<|end_of_text|>", "<|eot_id|>"],
        "template": LLAMA3_TEMPLATE,
    },
    "qwen2": {
        "tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "bos": None,
        "eos": "<|endoftext|>",
        "generation_eos": ["<|im_end|>", "<|endoftext|>"],
        "template": QWEN2_TEMPLATE,
    },
    "mistral": {
        "tokens": ["[INST]", "[/INST]"],
        "bos": "<s>",
        "eos": "</s>",
        "generation_eos": ["</s>"],
        "template": MISTRAL_TEMPLATE,
    },
}


def build_chat_tokenizer(family: str) -> Any:
    """The tiny BPE tokenizer with ``family``'s special tokens and chat template."""
    from nextgpt.tiny.llm import build_tiny_tokenizer

    spec = SPECIALS[family]
    tokenizer = build_tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": spec["tokens"]})
    tokenizer.bos_token = spec["bos"]
    tokenizer.eos_token = spec["eos"]
    tokenizer.pad_token = spec["eos"]
    tokenizer.chat_template = spec["template"]
    return tokenizer


def build_chat_model(family: str, tokenizer: Any) -> Any:
    """A random two-layer model of ``family``'s architecture sized to ``tokenizer``."""
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    common: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    classes = {
        "llama3": (LlamaConfig, LlamaForCausalLM, {"rope_theta": 500000.0, "tie_word_embeddings": False}),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM, {"tie_word_embeddings": True}),
        "mistral": (MistralConfig, MistralForCausalLM, {"sliding_window": None, "tie_word_embeddings": False}),
    }
    config_class, model_class, extra = classes[family]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = model_class(config_class(**common, **extra))
    eos = [tokenizer.convert_tokens_to_ids(t) for t in SPECIALS[family]["generation_eos"]]
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id
    )
    return model


def chat_llm_path(home: Path, family: str) -> Path:
    """Folder of ``family``'s tiny chat LLM under ``home``, written on first call."""
    target = home / "tiny" / VERSION / family
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=target.parent))
    tokenizer = build_chat_tokenizer(family)
    build_chat_model(family, tokenizer).save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target
