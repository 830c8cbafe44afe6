"""``llm.template: auto`` with tiny random chat LLMs of three families (Llama-3, Qwen2, Mistral):
rendering, the supervision mask token by token, stop ids, generation, training stages 1-3 and a
save/load round trip."""

from __future__ import annotations

import pytest
import torch
from chat_llms import FAMILIES, chat_llm_path
from nextgpt.errors import ConfigError
from nextgpt.templates import Turn

MEDIA = object()
"""Marks where the media embedding sits in a hand-made expectation."""

CONVERSATION = [
    Turn(role="user", text="<image> what is it?"),
    Turn(role="assistant", text="a red circle"),
    Turn(role="user", text="and now?"),
    Turn(role="assistant", text="a blue square"),
]

# (text, supervised) pieces as each family's chat format writes CONVERSATION, by hand.
EXPECTED = {
    "llama3": [
        ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n", False),
        MEDIA,
        (" what is it?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", False),
        ("a red circle<|eot_id|>", True),
        ("<|start_header_id|>user<|end_header_id|>\n\nand now?<|eot_id|>", False),
        ("<|start_header_id|>assistant<|end_header_id|>\n\n", False),
        ("a blue square<|eot_id|>", True),
    ],
    "qwen2": [
        ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n", False),
        MEDIA,
        (" what is it?<|im_end|>\n<|im_start|>assistant\n", False),
        ("a red circle<|im_end|>", True),
        ("\n<|im_start|>user\nand now?<|im_end|>\n<|im_start|>assistant\n", False),
        ("a blue square<|im_end|>", True),
        ("\n", False),
    ],
    "mistral": [
        ("<s>[INST] ", False),
        MEDIA,
        (" what is it? [/INST]", False),
        (" ", False),
        ("a red circle</s>", True),
        ("[INST] and now? [/INST]", False),
        (" ", False),
        ("a blue square</s>", True),
    ],
}
TURN_END = {"llama3": "<|eot_id|>", "qwen2": "<|im_end|>", "mistral": "</s>"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def chat_model(family, nextgpt_home, registry):
    from nextgpt.model import NextGPTModel
    from nextgpt.presets import preset_config

    source = str(chat_llm_path(nextgpt_home, family))
    config = preset_config("tiny", registry, modalities=["image"], llm_source=source)
    return NextGPTModel(config, registry)


def expected_ids(tokenizer, pieces, media_len, pad):
    ids: list[int] = []
    labels: list[int] = []
    for piece in pieces:
        if piece is MEDIA:
            ids += [pad] * media_len
            labels += [-100] * media_len
            continue
        text, supervised = piece
        piece_ids = tokenizer(text, add_special_tokens=False).input_ids
        ids += piece_ids
        labels += piece_ids if supervised else [-100] * len(piece_ids)
    return ids, labels


def test_supervision_mask_token_by_token(family, chat_model):
    from nextgpt.chat_templates import ChatTemplate

    assert isinstance(chat_model.template, ChatTemplate)
    media = torch.zeros(1, chat_model.d_llm)
    packed = chat_model.pack(CONVERSATION, [media], add_generation_prompt=False)
    tok = chat_model.tokenizer
    ids, labels = expected_ids(tok, EXPECTED[family], 1, tok.pad_token_id)
    got_ids, got_labels = packed.input_ids.tolist(), packed.labels.tolist()
    assert [tok.convert_ids_to_tokens(i) for i in got_ids] == [tok.convert_ids_to_tokens(i) for i in ids]
    assert got_labels == labels
    supervised = tok.decode([i for i in got_labels if i != -100])
    assert supervised == f"a red circle{TURN_END[family]}a blue square{TURN_END[family]}"


def test_generation_prompt_and_stop_ids(family, chat_model):
    tok = chat_model.tokenizer
    template = chat_model.template
    assert template.turn_end == TURN_END[family]
    turn_end = tok.convert_tokens_to_ids(TURN_END[family])
    stops = chat_model.stop_token_ids()
    assert stops[0] == turn_end
    assert set(chat_model.llm.generation_config.eos_token_id) <= set(stops)
    prompt = template.segments(CONVERSATION[:3], add_generation_prompt=True)
    assert [s.text for s in prompt if s.supervised] == [f"a red circle{TURN_END[family]}"]
    rendered = tok.apply_chat_template(
        [{"role": t.role, "content": t.text} for t in CONVERSATION[:3]], tokenize=False, add_generation_prompt=True
    )
    assert "".join(s.text for s in prompt) == rendered
    words = tok("a b", add_special_tokens=False).input_ids
    assert chat_model._strip_stop([*words, turn_end, *words]) == words

    out = chat_model.generate([{"role": "user", "content": "hello"}], max_new_tokens=3, seed=0)
    assert turn_end not in out.token_ids and len(out.token_ids) <= 3


def test_save_load_round_trip_keeps_the_template(family, chat_model, tmp_path, registry):
    from nextgpt.model import NextGPTModel

    chat_model.save_pretrained(tmp_path / "m")
    loaded = NextGPTModel.from_pretrained(tmp_path / "m", registry=registry)
    assert loaded.config.llm.template == "auto"
    assert loaded.template.turn_end == TURN_END[family]
    media = torch.zeros(1, chat_model.d_llm)
    a = chat_model.pack(CONVERSATION, [media], add_generation_prompt=False)
    b = loaded.pack(CONVERSATION, [media], add_generation_prompt=False)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
    assert torch.allclose(a.embeds, b.embeds)


@pytest.mark.parametrize(
    ("stage", "fmt", "task"), [(1, "pairs", "caption"), (2, "pairs", "generate"), (3, "instruction", "caption")]
)
def test_two_training_steps_per_stage(family, nextgpt_home, registry, tmp_path_factory, stage, fmt, task):
    from lightning.pytorch import Trainer
    from nextgpt.data.synthetic import write_synthetic_dataset
    from nextgpt.training.datamodule import NextGPTDataModule
    from nextgpt.training.module import NextGPTLightningModule

    root = tmp_path_factory.mktemp(f"data-{family}-{stage}")
    data = write_synthetic_dataset(root, {"image": registry.modality("image")}, per_modality=2)
    source = chat_llm_path(nextgpt_home, family)
    module = NextGPTLightningModule(
        "tiny",
        stage=stage,
        plugins=["image"],
        modalities=["image"],
        overrides=[f"llm.source={source}"],
        warmup_steps=0,
        schedule="constant",
        lr=1e-2,
    )
    module.configure_model()
    losses: list[float] = []

    from lightning.pytorch import Callback

    class Recorder(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    dm = NextGPTDataModule(
        [{"path": str(data[fmt]), "format": fmt, "task": task}], batch_size=2, plugins=["image"], shuffle=False
    )
    Trainer(
        max_steps=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(root),
        callbacks=[Recorder()],
    ).fit(module, dm)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert module.model.config.llm.source == str(source)


def test_template_errors_name_the_template(nextgpt_home):
    from nextgpt.chat_templates import ChatTemplate
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(chat_llm_path(nextgpt_home, "qwen2"))
    drops_media = tok.chat_template.replace("message['content']", "message['content'] | replace('<image>', '')")
    tok.chat_template = drops_media
    with pytest.raises(ConfigError, match=r"llm.template 'auto'.*'<image>' does not survive"):
        ChatTemplate(tok, "qwen-like", placeholders=["<image>"]).segments(CONVERSATION, False)
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ConfigError, match=r"llm.template 'auto' \(the chat template of plain\).*no end-of-turn"):
        ChatTemplate(tok, "plain")
    tok.chat_template = "{% for m in messages|reverse %}{{ m['content'] }}<|im_end|>{% endfor %}"
    with pytest.raises(ConfigError, match=r"llm.template 'auto'.*changes the text of the turns before it"):
        ChatTemplate(tok, "reversing")


def test_qwen2_5_7b_preset_uses_the_chat_template(registry, monkeypatch):
    from nextgpt.presets import QWEN2_5_7B_ENV, QWEN2_5_7B_HUB_ID, preset_config

    monkeypatch.delenv(QWEN2_5_7B_ENV, raising=False)
    config = preset_config("qwen2.5-7b", registry)
    assert config.llm.source == QWEN2_5_7B_HUB_ID and config.llm.template == "auto"
    assert config.llm.lora is not None and config.llm.lora.r == 32 and config.llm.dtype == "bfloat16"
    assert set(config.modalities) == {"image", "audio", "video"}
    monkeypatch.setenv(QWEN2_5_7B_ENV, "/models/qwen2.5-7b-instruct")
    assert preset_config("qwen2.5-7b", registry).llm.source == "/models/qwen2.5-7b-instruct"


def test_system_prompt_is_optional_and_only_for_auto(nextgpt_home):
    from nextgpt.config import LLMConfig
    from nextgpt.templates import build_template
    from transformers import AutoTokenizer

    source = str(chat_llm_path(nextgpt_home, "qwen2"))
    tok = AutoTokenizer.from_pretrained(source)
    turns = CONVERSATION[:1]
    plain = build_template(LLMConfig(source=source), tok, ["<image>"])
    own = "".join(s.text for s in plain.segments(turns, True))
    assert own.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    brief = build_template(LLMConfig(source=source, system_prompt="Be brief."), tok, ["<image>"])
    text = "".join(s.text for s in brief.segments(turns, True))
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<image> what is it?")
    with pytest.raises(ConfigError, match=r"llm.system_prompt: named templates \('vicuna_v1'\)"):
        build_template(LLMConfig(source=source, template="vicuna_v1", system_prompt="Be brief."), tok)
