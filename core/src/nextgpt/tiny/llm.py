"""A tiny random LLaMA and its byte-level BPE tokenizer, built offline for tests and the demo.

The pair is written once to ``nextgpt_home()/tiny/llm-v1`` and then loaded through
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``, exactly as a real
local checkpoint would be.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nextgpt.paths import nextgpt_home

TINY_LLM_VERSION = "llm-v1"

_CORPUS = [
    "### Human: describe the picture\n### Assistant: a red circle at the top left\n###",
    "### Human: what do you hear?\n### Assistant: a high beep then a low beep\n###",
    "A chat between a curious user and an artificial intelligence assistant. USER: hello ASSISTANT: hi</s>",
    "a blue square moving right. a green triangle. show me an image, a sound and a video.",
    "generate a caption for this image. here is the sound you asked for. the video shows a cat.",
]


def train_bpe_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained in memory on ``texts`` (special tokens ``<unk> <s>
    </s>``, ``</s>`` doubling as padding), wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",
        clean_up_tokenization_spaces=False,
    )


def build_tiny_tokenizer(vocab_size: int = 300) -> Any:
    """The tiny preset's tokenizer: `train_bpe_tokenizer` on a few lines of chat text."""
    return train_bpe_tokenizer(_CORPUS, vocab_size)


def build_tiny_llama(vocab_size: int, seed: int = 0):
    """The tiny LLaMA of reference/environment.md with random weights (global RNG untouched)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def tiny_llm_path() -> Path:
    """Folder holding the tiny LLM and tokenizer, materialised on first call."""
    target = nextgpt_home() / "tiny" / TINY_LLM_VERSION
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".llm-", dir=target.parent))
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_llama(len(tokenizer))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        os.replace(staging, target)
    except OSError:  # another process won the race; its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    return target
