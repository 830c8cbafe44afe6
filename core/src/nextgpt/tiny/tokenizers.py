"""Tiny tokenizers built offline from small local vocabularies, for the tiny diffusers pipelines.

Real pipelines ship a CLIP tokenizer (Stable Diffusion, zeroscope), a RoBERTa tokenizer
(AudioLDM's CLAP text encoder) or a T5 tokenizer (PixArt, Stable Audio). Tests have no model
hub, so these builders write a minimal ``vocab.json`` / ``merges.txt`` pair into a temporary
folder and load it with the tokenizer class's own ``from_pretrained`` (CLIP, RoBERTa), or give
a small unigram vocabulary to the class's constructor (T5): the result is a genuine tokenizer of
that class that saves and reloads like a downloaded one. With no merges (one-character pieces),
every word is split into single characters, so any text can be tokenized with a few hundred ids.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def byte_characters() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the bytes 0..255 (GPT-2 order)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def clip_vocab() -> dict[str, int]:
    """Byte characters, their end-of-word (``</w>``) variants, then the two special tokens."""
    tokens = byte_characters()
    vocab = {token: i for i, token in enumerate(tokens)}
    for token in tokens:
        vocab[token + "</w>"] = len(vocab)
    vocab[CLIP_BOS] = len(vocab)
    vocab[CLIP_EOS] = len(vocab)
    return vocab


def roberta_vocab() -> dict[str, int]:
    """RoBERTa's special tokens (``<s> <pad> </s> <unk>``), the byte characters, then ``<mask>``."""
    vocab = {token: i for i, token in enumerate(ROBERTA_SPECIALS)}
    for token in byte_characters():
        vocab[token] = len(vocab)
    vocab["<mask>"] = len(vocab)
    return vocab


def _load_from_files(tokenizer_class: Any, vocab: dict[str, int], **kwargs: Any) -> Any:
    """Write ``vocab`` and empty merges to a temporary folder, load them with the class."""
    with tempfile.TemporaryDirectory(prefix="nextgpt-tokenizer-") as folder:
        Path(folder, "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        Path(folder, "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        return tokenizer_class.from_pretrained(folder, **kwargs)


def build_clip_tokenizer(model_max_length: int = 77) -> Any:
    """A `transformers.CLIPTokenizer` over `clip_vocab` (514 ids) with no merges.

    Args:
        model_max_length: the padded prompt length, the ``Q`` of the condition (77 as in CLIP).
    """
    from transformers import CLIPTokenizer

    return _load_from_files(CLIPTokenizer, clip_vocab(), model_max_length=model_max_length)


def build_roberta_tokenizer(model_max_length: int = 77) -> Any:
    """A `transformers.RobertaTokenizer` over `roberta_vocab` (261 ids) with no merges.

    Args:
        model_max_length: the longest prompt, in tokens, the text encoder is fed.
    """
    from transformers import RobertaTokenizer

    return _load_from_files(RobertaTokenizer, roberta_vocab(), model_max_length=model_max_length)


T5_SPECIALS = ("<pad>", "</s>", "<unk>")
"""T5's special tokens, ids 0, 1 and 2 (padding, end of sequence, unknown)."""


def t5_vocab() -> list[tuple[str, float]]:
    """A unigram vocabulary: T5's specials, the word-start piece ``▁``, then the printable ASCII
    characters (each alone), all with the same score so every word splits into characters."""
    pieces = [(token, 0.0) for token in T5_SPECIALS] + [("\u2581", -1.0)]
    return pieces + [(chr(code), -1.0) for code in range(ord("!"), ord("~") + 1)]


def build_t5_tokenizer(model_max_length: int = 16) -> Any:
    """A `transformers.T5Tokenizer` over `t5_vocab` (98 ids; unknown characters map to ``<unk>``).

    Args:
        model_max_length: the padded prompt length (Stable Audio's ``Q``; PixArt pads to its
            ``max_sequence_length`` instead).
    """
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=t5_vocab(), extra_ids=0, model_max_length=model_max_length)
