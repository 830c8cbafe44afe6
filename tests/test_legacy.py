"""The released NExT-GPT checkpoint format: manifest, conversion, and the legacy behaviour."""

from __future__ import annotations

import pytest
import torch
from nextgpt.config import OutputProjectorConfig
from nextgpt.errors import ConfigError
from nextgpt.legacy.checkpoint import RELEASED_PROJECTORS, legacy_manifest, released_shape
from nextgpt.legacy.convert import convert_legacy
from nextgpt.model import NextGPTModel
from nextgpt.projectors import QueryTransformerProjector
from nextgpt.templates import Turn
from safetensors.torch import load_file
from torch.nn import functional as F

HIDDEN, LAYERS, RANK = 64, 2, 4
TINY_PROJECTOR = OutputProjectorConfig(
    d_model=32, num_heads=4, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=64
)


def test_full_size_manifest_matches_the_release():
    manifest = legacy_manifest(released_shape())
    assert len(manifest) == 647

    def count(prefix: str) -> int:
        return sum(torch.Size(s).numel() for k, s in manifest.items() if k.startswith(prefix))

    assert count("gen_text_hidden_fcs.0.") == 31_958_784
    assert count("gen_text_hidden_fcs_video.0.") == 32_090_112
    assert count("gen_text_hidden_fcs_audio.0.") == 31_788_544
    assert sum(1 for k in manifest if k.startswith("gen_text_hidden_fcs.0.")) == 129
    assert sum(torch.Size(s).numel() for k, s in manifest.items() if "lora_" in k) == 33_554_432
    assert count("llama_proj.") == 4_198_400
    assert manifest["llama_model.base_model.model.model.embed_tokens.weight"] == (32038, 4096)
    assert manifest["llama_model.base_model.model.model.layers.31.self_attn.v_proj.lora_B.default.weight"] == (4096, 32)
    assert manifest["gen_text_hidden_fcs_audio.0.query_embs"] == (1, 1, 512)
    assert manifest["gen_text_hidden_fcs_video.0.tfm.decoder.layers.3.multihead_attn.in_proj_weight"] == (1536, 512)
    total = sum(torch.Size(s).numel() for s in manifest.values())
    assert round(total / 1e6, 1) == 396.0


@pytest.fixture(scope="module")
def vicuna_like(tmp_path_factory):
    """A tiny LLaMA-1-shaped model (no grouped-query attention) with a 300-entry tokenizer."""
    from nextgpt.tiny.llm import build_tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("vicuna")
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, len(tokenizer)


@pytest.fixture(scope="module")
def release_state(vicuna_like, registry):
    """A synthetic checkpoint with exactly the released key structure, at tiny sizes, fp16."""
    _, base = vicuna_like
    vocab = base + 38
    g = torch.Generator().manual_seed(0)
    rnd = lambda *shape: (torch.randn(*shape, generator=g) * 0.1).half()  # noqa: E731
    state = {
        "llama_model.base_model.model.model.embed_tokens.weight": rnd(vocab, HIDDEN),
        "llama_model.base_model.model.lm_head.weight": rnd(vocab, HIDDEN),
        "llama_proj.weight": rnd(HIDDEN, 32),
        "llama_proj.bias": rnd(HIDDEN),
    }
    for layer in range(LAYERS):
        for target in ("q_proj", "k_proj", "v_proj", "o_proj"):
            base_key = f"llama_model.base_model.model.model.layers.{layer}.self_attn.{target}"
            state[f"{base_key}.lora_A.default.weight"] = rnd(RANK, HIDDEN)
            state[f"{base_key}.lora_B.default.weight"] = rnd(HIDDEN, RANK)
    for p in RELEASED_PROJECTORS:
        spec = (
            registry.decoder_backend(p.modality, registry.modality(p.modality).config_model().decoder.backend)
            .build("tiny")
            .condition_spec
        )
        module = QueryTransformerProjector(HIDDEN, spec, TINY_PROJECTOR)
        for key, value in module.state_dict().items():
            state[f"{p.prefix}.{key}"] = rnd(*value.shape)
    return state


def convert(tmp_path, state, vicuna, registry, **kwargs):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "pytorch_model.pt"
    torch.save(state, path)
    tiny = {p.modality: "tiny" for p in RELEASED_PROJECTORS}
    return convert_legacy(path, vicuna, "tiny", tmp_path / "converted", decoders=tiny, registry=registry, **kwargs)


def test_conversion_keeps_fp16_and_maps_every_key(tmp_path, release_state, vicuna_like, registry):
    out = convert(tmp_path, release_state, vicuna_like[0], registry)
    tensors = load_file(str(out / "model.safetensors"))
    assert all(t.dtype == torch.float16 for t in tensors.values())
    assert torch.equal(
        tensors["output_projectors.video.query_embs"], release_state["gen_text_hidden_fcs_video.0.query_embs"]
    )
    assert torch.equal(tensors["input_projectors.audio.proj.weight"], release_state["llama_proj.weight"])


def test_converted_model_reproduces_the_release(tmp_path, release_state, vicuna_like, registry):
    from transformers import LlamaForCausalLM

    vicuna, base = vicuna_like
    out = convert(tmp_path, release_state, vicuna, registry, dtype="float32")
    model = NextGPTModel.from_pretrained(out, registry=registry).eval()

    # token ids as released: <Img>, </Img>, then [IMG0..3], [VID0..23], [AUD0..7]
    assert model.wrap_ids == [base, base + 1]
    assert model.signal_ids["image"] == list(range(base + 2, base + 6))
    assert model.signal_ids["video"] == list(range(base + 6, base + 30))
    assert model.signal_ids["audio"] == list(range(base + 30, base + 38))
    assert model.encoders["audio"].logit_scale is False  # no x20 on audio features

    # logits: LLM with the checkpoint's embedding/lm_head and W + B A, computed directly
    reference = LlamaForCausalLM.from_pretrained(vicuna, dtype=torch.float32).eval()
    reference.resize_token_embeddings(base + 38)
    state = {k: v.float() for k, v in release_state.items()}
    with torch.no_grad():
        reference.model.embed_tokens.weight.copy_(state["llama_model.base_model.model.model.embed_tokens.weight"])
        reference.lm_head.weight.copy_(state["llama_model.base_model.model.lm_head.weight"])
        for name, param in reference.named_parameters():
            key = f"llama_model.base_model.model.{name.removesuffix('.weight')}.lora_A.default.weight"
            if key in state:
                param += state[key.replace("lora_A", "lora_B")] @ state[key]
        ids = torch.tensor([[1, 40, 41, base, base + 2, base + 3, base + 37, 7]])
        torch.testing.assert_close(
            model.llm(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=1e-4, atol=1e-4
        )

        # projector outputs: fc -> nn.Transformer(src=x, tgt=queries) -> model, with x = hidden + emb(signal)
        for p in RELEASED_PROJECTORS:
            n = len(model.signal_ids[p.modality])
            hidden = torch.randn(2, n, HIDDEN, generator=torch.Generator().manual_seed(5))
            x = hidden + state["llama_model.base_model.model.model.embed_tokens.weight"][model.signal_ids[p.modality]]
            sub = {k[len(p.prefix) + 1 :]: v for k, v in state.items() if k.startswith(p.prefix + ".")}
            tfm = torch.nn.Transformer(
                d_model=32,
                nhead=4,
                num_encoder_layers=1,
                num_decoder_layers=1,
                dim_feedforward=64,
                dropout=0.0,
                batch_first=True,
                norm_first=True,
            )
            tfm.load_state_dict({k[4:]: v for k, v in sub.items() if k.startswith("tfm.")})
            y = tfm(F.linear(x, sub["fc.weight"], sub["fc.bias"]), sub["query_embs"].expand(2, -1, -1))
            expected = F.linear(y, sub["model.weight"], sub["model.bias"])
            projected = model.project_signal(hidden, p.modality)["prompt_embeds"]  # audio: one pooled vector
            torch.testing.assert_close(projected, expected.reshape(projected.shape), rtol=1e-4, atol=1e-5)


def test_legacy_prompt_building(tmp_path, release_state, vicuna_like, registry):
    out = convert(tmp_path, release_state, vicuna_like[0], registry, dtype="float32")
    model = NextGPTModel.from_pretrained(out, registry=registry)
    tok = model.tokenizer
    media = torch.zeros(1, HIDDEN)
    packed = model.pack([Turn(role="user", text="<audio> what is it")], [media], add_generation_prompt=True)
    ids = packed.input_ids.tolist()
    img, end_img = model.wrap_ids
    # a BOS before every text chunk, <Img>/</Img> around the media (whatever its modality)
    first_chunk = tok("### Human:", add_special_tokens=False).input_ids
    assert ids[: 1 + len(first_chunk)] == [tok.bos_token_id, *first_chunk]
    at = 1 + len(first_chunk)
    assert ids[at] == img and ids[at + 2] == end_img and ids[at + 3] == tok.bos_token_id
    assert tok.decode(ids[at + 4 :]) == " what is it\n### Assistant:"
    assert model.template.stop == ("###",)


def test_wrong_and_missing_keys_are_reported_by_name(tmp_path, release_state, vicuna_like, registry):
    state = dict(release_state)
    del state["gen_text_hidden_fcs_audio.0.model.bias"]
    state["gen_text_hidden_fcs.0.extra_scale"] = torch.zeros(1)
    state["llama_proj.bias"] = torch.zeros(3)
    with pytest.raises(ConfigError) as info:
        convert(tmp_path, state, vicuna_like[0], registry)
    message = str(info.value)
    assert "missing: gen_text_hidden_fcs_audio.0.model.bias" in message
    assert "unused: gen_text_hidden_fcs.0.extra_scale" in message
    assert "shape: llama_proj.bias (3,) != (64,)" in message


def test_wrong_tokenizer_size_is_explained(tmp_path, release_state, vicuna_like, registry):
    state = dict(release_state)
    for key in (
        "llama_model.base_model.model.model.embed_tokens.weight",
        "llama_model.base_model.model.lm_head.weight",
    ):
        state[key] = state[key][:-1]
    with pytest.raises(ConfigError, match="32000-entry tokenizer"):
        convert(tmp_path, state, vicuna_like[0], registry)


def test_merge_lora_writes_a_merged_llm(tmp_path, release_state, vicuna_like, registry):
    out = convert(tmp_path, release_state, vicuna_like[0], registry, merge_lora=True, dtype="float32")
    assert (out / "llm" / "config.json").exists()
    assert not any("lora" in k for k in load_file(str(out / "model.safetensors")))
    merged = NextGPTModel.from_pretrained(out, registry=registry).eval()
    separate = NextGPTModel.from_pretrained(
        convert(tmp_path / "b", release_state, vicuna_like[0], registry, dtype="float32"), registry=registry
    ).eval()
    ids = torch.tensor([[1, 40, 41, 7]])
    with torch.no_grad():
        torch.testing.assert_close(
            merged.llm(input_ids=ids).logits, separate.llm(input_ids=ids).logits, rtol=1e-4, atol=1e-4
        )
