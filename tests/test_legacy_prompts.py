"""``vicuna_v0_legacy`` builds the released NExT-GPT demo's prompts token for token
(reference/nextgpt-facts.md, "Reference prompts, exact"), on a LLaMA-1-compatible tokenizer
(`llama1_tokenizer`): BOS only before each text chunk between media, no word-start ``▁``
between ``Human:`` and ``<Img>``, a lone ``▁`` after ``Human:`` in the turn being answered and
after ``</Img>``, one ``\\n###`` between turns; generation stops on ``▁###`` (LLaMA's 835)."""

from __future__ import annotations

import pytest
import torch
from llama1_tokenizer import build_llama1_tokenizer
from nextgpt.templates import Turn

M = "MEDIA"
"""One media embedding (a pad id in ``input_ids``)."""
Q, A = "what is it", "a red circle"
HEAD = ["<s>", "▁###", "▁Human:"]
ASK = ["<0x0A>", "##", "#", "▁Assistant:"]
QUESTION = ["▁what", "▁is", "▁it"]
ANSWER = ["▁a", "▁red", "▁circle"]
WRAPPED = ["<Img>", M, "</Img>"]

CASES = {
    # [BOS] "### Human:  {q}\n### Assistant:"
    "text-only first turn": ([Turn(role="user", text=Q)], 0, [*HEAD, "▁", *QUESTION, *ASK]),
    # [BOS] "### Human:" <Img> m </Img> [BOS] " {q}\n### Assistant:"
    "first turn, one media item": (
        [Turn(role="user", text=f"<image> {Q}")],
        1,
        [*HEAD, *WRAPPED, "<s>", "▁", *QUESTION, *ASK],
    ),
    "first turn, two media items": (
        [Turn(role="user", text=f"<image> <audio> {Q}")],
        2,
        [*HEAD, *WRAPPED, *WRAPPED, "<s>", "▁", *QUESTION, *ASK],
    ),
    # "### Human: q1\n### Assistant: a1\n### Human:  q2\n### Assistant:" as one chunk
    "second turn": (
        [Turn(role="user", text=Q), Turn(role="assistant", text=A), Turn(role="user", text="and now")],
        0,
        [*HEAD, *QUESTION, *ASK, *ANSWER, "<0x0A>", "##", "#", "▁Human:", "▁", "▁and", "▁now", *ASK],
    ),
    "third turn after media": (
        [
            Turn(role="user", text=f"<image> {Q}"),
            Turn(role="assistant", text=A),
            Turn(role="user", text="and now"),
            Turn(role="assistant", text=A),
            Turn(role="user", text="tell me more"),
        ],
        1,
        [
            *HEAD, *WRAPPED, "<s>", "▁", *QUESTION, *ASK, *ANSWER, "<0x0A>", "##", "#",
            "▁Human:", "▁and", "▁now", *ASK, *ANSWER, "<0x0A>", "##", "#",
            "▁Human:", "▁", "▁tell", "▁me", "▁more", *ASK,
        ],
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def legacy_model(tmp_path_factory, registry):
    from nextgpt.model import NextGPTModel
    from nextgpt.presets import preset_config
    from nextgpt.tiny.llm import build_tiny_llama

    folder = tmp_path_factory.mktemp("llama1")
    tokenizer = build_llama1_tokenizer()
    build_tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = preset_config("tiny", registry, modalities=["image", "audio"], llm_source=str(folder))
    llm = config.llm.model_copy(
        update={"template": "vicuna_v0_legacy", "media_wrap": ("<Img>", "</Img>"), "bos_per_text_chunk": True}
    )
    return NextGPTModel(config.model_copy(update={"llm": llm}), registry)


@pytest.mark.parametrize("case", CASES)
def test_prompt_ids_match_the_reference(legacy_model, case):
    turns, n_media, tokens = CASES[case]
    tok = legacy_model.tokenizer
    media = [torch.zeros(1, legacy_model.d_llm)] * n_media
    ids = legacy_model.pack(turns, media, add_generation_prompt=True).input_ids.tolist()
    pad = tok.pad_token_id
    expected = [pad if t == M else tok.convert_tokens_to_ids(t) for t in tokens]
    assert [tok.convert_ids_to_tokens(i) for i in ids] == [tok.convert_ids_to_tokens(i) for i in expected]
    assert ids == expected


def test_training_labels_cover_the_replies_only(legacy_model):
    turns, _, _ = CASES["second turn"]
    turns = [*turns, Turn(role="assistant", text=A)]
    packed = legacy_model.pack(turns, [], add_generation_prompt=False)
    tok = legacy_model.tokenizer
    supervised = [tok.convert_ids_to_tokens(i) for i in packed.labels.tolist() if i != -100]
    assert supervised == [*ANSWER, "<0x0A>", "##", "#"] * 2


def test_generation_stops_on_the_hash_token_id(legacy_model):
    tok = legacy_model.tokenizer
    hashes = tok.convert_tokens_to_ids("▁###")
    assert hashes in legacy_model.stop_token_ids()
    words = tok(A, add_special_tokens=False).input_ids
    assert legacy_model._strip_stop([*words, hashes, *words]) == words
    newline, two, one = (tok.convert_tokens_to_ids(t) for t in ("<0x0A>", "##", "#"))
    assert legacy_model._strip_stop([*words, newline, two, one, *words]) == words  # "...\n###": the turn end
