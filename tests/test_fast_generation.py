"""Generation reads the signal tokens' states from its own decoding steps (no second pass),
decodes lists of conversations as one batch, and can use a static KV cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nextgpt.decoding import decode, states_of

FAST = {"image": {"steps": 1}, "audio": {"steps": 1}}


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


class ForceTokens:
    """A logits processor making row ``b`` generate ``sequences[b]`` (then EOS)."""

    def __init__(self, sequences: list[list[int]], eos: int) -> None:
        self.sequences, self.eos = sequences, eos

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1]
        forced = torch.full_like(scores, -1e9)
        for row, seq in enumerate(self.sequences):
            forced[row, seq[step] if step < len(seq) else self.eos] = 0
        return forced


def second_pass_states(llm, prompt: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """What generation used to do: one forward over the prompt and the whole answer."""
    embeds = torch.cat([prompt, llm.get_input_embeddings()(torch.tensor(ids))]).unsqueeze(0)
    return llm(inputs_embeds=embeds, output_hidden_states=True).hidden_states[-1][0, prompt.shape[0] :]


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_recorded_states_equal_a_second_pass(tiny_model, cache):
    """Rows of different prompt lengths (left padding), signal tokens emitted mid-answer (their
    states recorded while decoding), a run cut by the token budget and one appended after it
    (completed by a continuation over the cache): every state equals the second pass's."""
    llm, eos = tiny_model.llm, tiny_model.tokenizer.eos_token_id
    image = tiny_model.signal_ids["image"]
    audio = tiny_model.signal_ids["audio"]
    torch.manual_seed(0)
    prompts = [torch.randn(7, tiny_model.d_llm), torch.randn(12, tiny_model.d_llm)]
    forced = [[5, 6, *image, 9, 10, 11, 12, 13, 14], [7, *audio[:3]]]
    with torch.no_grad():
        decoded = decode(
            llm,
            prompts,
            torch.zeros(tiny_model.d_llm),
            cache,
            spare_positions=len(audio),
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=eos,
            eos_token_id=eos,
            logits_processor=[ForceTokens(forced, eos)],
        )
        assert decoded.new_ids[0] == forced[0][:8]
        wanted = [forced[0][:6], [7, *audio]]  # row 0: fed while decoding; row 1: completed after
        states = states_of(llm, decoded, wanted, eos)
        for prompt, ids, got in zip(prompts, wanted, states, strict=True):
            torch.testing.assert_close(got, second_pass_states(llm, prompt, ids), rtol=1e-4, atol=1e-5)


def media_array(item) -> np.ndarray:
    return np.asarray(getattr(item, "waveform", item), dtype=np.float32)  # an image, or a clip's samples


def test_generated_media_match_the_second_pass(tiny_model, monkeypatch):
    """The image generate() writes equals the one decoded from second-pass states."""
    messages = ask("show me a red circle")
    out = tiny_model.generate(messages, request=["image"], max_new_tokens=4, seed=5)
    assert [m.modality for m in out.media] == ["image"]
    packed, _ = tiny_model._prompt(messages, 4)
    with torch.no_grad():
        hidden = second_pass_states(tiny_model.llm, packed.embeds, out.token_ids)
        start = out.token_ids.index(tiny_model.signal_ids["image"][0])
        states = hidden[start : start + len(tiny_model.signal_ids["image"])].unsqueeze(0)
        cond = tiny_model.project_signal(states, "image")
        expected = tiny_model.decoders["image"].generate(cond, tiny_model._decode_options("image", None, 5))[0]
    np.testing.assert_allclose(media_array(out.media[0].media), media_array(expected), atol=2.0)


def test_a_batch_equals_single_calls(tiny_model):
    """generate(list of conversations): one left-padded batch, each output (text, ids, media)
    as the conversation alone gives it (greedy)."""
    conversations = [ask("hello"), ask("show me the picture of a blue square moving right please"), ask("a sound")]
    kwargs = {"request": ["image"], "max_new_tokens": 6, "seed": 3, "decode": {"image": {"steps": 1}}}
    batch = tiny_model.generate(conversations, **kwargs)
    assert isinstance(batch, list) and len(batch) == 3
    for conversation, got in zip(conversations, batch, strict=True):
        alone = tiny_model.generate(conversation, **kwargs)
        assert got.token_ids == alone.token_ids and got.text == alone.text
        assert len(got.media) == len(alone.media) == 1
        np.testing.assert_allclose(media_array(got.media[0].media), media_array(alone.media[0].media), atol=2.0)


def test_static_cache_gives_the_dynamic_answer(tiny_model):
    messages = ask("a picture and a sound please")
    kwargs = {"request": ["image", "audio"], "max_new_tokens": 5, "seed": 2, "decode": FAST}
    dynamic = tiny_model.generate(messages, **kwargs)
    tiny_model.config.llm.cache = "static"
    try:
        static = tiny_model.generate(messages, **kwargs)
    finally:
        tiny_model.config.llm.cache = "dynamic"
    assert static.token_ids == dynamic.token_ids
    for a, b in zip(static.media, dynamic.media, strict=True):
        np.testing.assert_allclose(media_array(a.media), media_array(b.media), atol=2.0)


def test_text_and_media_callbacks(tiny_model):
    """_generate hands each new piece of visible text and each written item to its callbacks."""
    pieces, items = [], []
    out = tiny_model._generate(
        ask("hello"), None, ["image"], None, 12, None, None, 1, "", on_text=pieces.append, on_media=items.append
    )
    assert "".join(pieces) == out.text
    assert items == out.media and len(items) == 1


def test_bad_cache_and_empty_batch(tiny_model):
    from nextgpt.config import LLMConfig
    from nextgpt.errors import ConfigError
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cache"):
        LLMConfig(cache="paged")
    with pytest.raises(ConfigError, match="empty"):
        tiny_model._generate_batch([], None, (), None, 2, None, None, None, "")
