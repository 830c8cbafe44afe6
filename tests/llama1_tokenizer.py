"""A small tokenizer that tokenises as LLaMA-1's SentencePiece tokenizer does, for the legacy
prompt tests: ids 0-2 are ``<unk> <s> </s>``, 3-258 the byte-fallback pieces (``<0x0A>`` = 13,
as in LLaMA), every call puts the word-start mark ``▁`` before its text (so a text starting
with a space gives a lone ``▁``, LLaMA's 29871), and a newline falls back to its byte, after
which ``###`` is ``##`` ``#`` (LLaMA's 2277, 29937) while ``▁###`` is one piece (LLaMA's 835)."""

from __future__ import annotations

from typing import Any

_CORPUS = ["### Human: what is in the image? ### Assistant: a red circle ###"] * 50 + [
    "what is it and now tell me more about the sound video picture"
] * 20


def build_llama1_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    byte_pieces = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<s>", "</s>", *byte_pieces],
        initial_alphabet=["▁"],
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", clean_up_tokenization_spaces=False
    )
