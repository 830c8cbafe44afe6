"""The any-to-any model on tiny random components: inputs, outputs, positions, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nextgpt.errors import ConfigError, MediaError, UnknownModalityError
from nextgpt.model import NextGPTModel
from nextgpt.signals import complete_signal_runs, find_signal_runs, gather_signal_states
from nextgpt.templates import VICUNA_V0, VICUNA_V1, Turn

MODALITIES = ["image", "audio", "video"]


@pytest.fixture(scope="module")
def example_files(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples")
    files = {}
    for name, spec in tiny_model.specs.items():
        files[name] = spec.save(spec.example(), folder / f"example{spec.output_extension}")
    return files


def ask(text, media=()):
    parts = [{"type": m, "path": str(p)} for m, p in media]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def test_tiny_model_shape(tiny_model):
    assert set(tiny_model.specs) == set(MODALITIES)
    assert {m: len(ids) for m, ids in tiny_model.signal_ids.items()} == {"image": 4, "audio": 8, "video": 24}
    vocab = len(tiny_model.tokenizer)
    assert tiny_model.llm.get_input_embeddings().weight.shape[0] == vocab
    # new rows start at the mean of the pretrained rows
    emb = tiny_model.llm.get_input_embeddings().weight
    assert torch.allclose(emb[tiny_model.signal_ids["video"][5]], emb[: tiny_model.base_vocab_size].mean(0), atol=1e-6)
    for name in MODALITIES:
        assert tiny_model.output_projectors[name].condition_spec == tiny_model.decoders[name].condition_spec


@pytest.mark.parametrize("modality", MODALITIES)
def test_each_modality_in_and_out(tiny_model, example_files, tmp_path, modality):
    messages = ask(f"what is in this {modality}?", [(modality, example_files[modality])])
    out = tiny_model.generate(messages, output_dir=tmp_path, request=[modality])
    assert [m.modality for m in out.media] == [modality]
    path = out.media[0].path
    assert path.exists() and path.suffix == tiny_model.specs[modality].output_extension
    reloaded = tiny_model.specs[modality].load(path)  # a file our own loader (and standard tools) reads
    assert reloaded is not None
    assert not any(f"[{p}" in out.text for p in ("IMG", "AUD", "VID"))


def test_two_output_modalities_in_one_answer(tiny_model, tmp_path):
    out = tiny_model.generate(ask("a picture and a sound please"), output_dir=tmp_path, request=["image", "audio"])
    assert sorted(m.modality for m in out.media) == ["audio", "image"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio_0.wav", "image_0.png"]
    message = out.as_message()
    assert message["role"] == "assistant" and {p["type"] for p in message["content"]} >= {"image", "audio"}


def test_an_earlier_answers_media_is_packed_as_the_signal_tokens_it_wrote(tiny_model, tmp_path, monkeypatch):
    """A media part of an assistant message in the history is what the model wrote: its
    modality's signal tokens, as training packs every answer's outputs (`OutputTurns`), not an
    input to encode."""
    from nextgpt.messages import parse_messages
    from nextgpt.templates import Turn
    from nextgpt.training.targets import OutputTurns

    first = tiny_model.generate(ask("a picture please"), output_dir=tmp_path, request=["image"])
    history = [*ask("a picture please"), first.as_message(), *ask("and another")]
    turns, media = parse_messages(history, tiny_model.specs, tiny_model.registry.modality)
    assert media == []  # the generated picture is not read back as an input
    encoded = []
    monkeypatch.setattr(tiny_model, "encode_media", lambda *a, **k: encoded.append(a) or [])
    packed, _ = tiny_model._prompt(history, max_new_tokens=4)
    assert encoded == []
    trained = OutputTurns(tiny_model.specs, tiny_model.decoders)(
        [
            Turn(role="user", text="a picture please"),
            Turn(role="assistant", text=f"{first.text} <image>".strip()),
            Turn(role="user", text="and another"),
        ]
    )
    expected = tiny_model.pack(trained, [], add_generation_prompt=True)
    assert packed.input_ids.tolist() == expected.input_ids.tolist()
    run = tiny_model.signal_ids["image"]
    ids = packed.input_ids.tolist()
    assert any(ids[i : i + len(run)] == run for i in range(len(ids)))


def test_text_only_answer_has_no_media(tiny_model, tmp_path):
    out = tiny_model.generate(ask("hello"), output_dir=tmp_path)
    ids = set(tiny_model.new_token_ids)
    if not ids & set(out.token_ids):
        assert out.media == [] and list(tmp_path.iterdir()) == []


def test_complete_signal_runs():
    runs = {"image": [100, 101, 102, 103], "audio": [200, 201]}
    # a partial run is completed in place, text around it kept
    assert complete_signal_runs([5, 100, 101, 7], runs) == [5, 100, 101, 102, 103, 7]
    # a stray later token alone does not trigger a modality
    assert complete_signal_runs([5, 102, 7], runs) == [5, 102, 7]
    # a requested modality is appended when absent, not duplicated when present
    assert complete_signal_runs([5, 200], runs, request=["audio", "image"]) == [5, 200, 201, 100, 101, 102, 103]
    assert find_signal_runs([1, 200, 201, 100, 101, 102, 103], runs) == [("audio", 1), ("image", 3)]


def test_projector_reads_the_states_at_the_signal_tokens_as_in_training(tiny_model, monkeypatch):
    """Generation must read the hidden states where the signal tokens are the inputs (as in
    training), not one position earlier as the reference code's inference does."""
    captured = {}
    decoder = tiny_model.decoders["image"]

    def fake_generate(condition, options):
        captured["condition"] = condition["prompt_embeds"].clone()
        return [None]

    monkeypatch.setattr(decoder, "generate", fake_generate)
    messages = ask("draw")
    out = tiny_model.generate(messages, request=["image"], max_new_tokens=3)

    # the training view: one teacher-forced forward over prompt + answer, positions from the ids
    from nextgpt.messages import parse_messages

    turns, _ = parse_messages(messages, tiny_model.specs, tiny_model.registry.modality)
    packed = tiny_model.pack(turns, [], add_generation_prompt=True)
    answer = torch.tensor(out.token_ids)
    embeds = torch.cat([packed.embeds, tiny_model.embed_tokens(answer)]).unsqueeze(0)
    ids = torch.cat([packed.input_ids, answer]).unsqueeze(0)
    with torch.no_grad():
        hidden = tiny_model.llm(inputs_embeds=embeds, output_hidden_states=True).hidden_states[-1]
        expected, rows = tiny_model.signal_conditions(hidden, ids, "image")
        start = int((ids[0] == tiny_model.signal_ids["image"][0]).nonzero()[0])
        shifted = tiny_model.project_signal(hidden[:, start - 1 : start + 3], "image")
    assert rows.tolist() == [0]
    torch.testing.assert_close(captured["condition"], expected["prompt_embeds"])
    assert not torch.allclose(captured["condition"], shifted["prompt_embeds"])


def test_gather_signal_states_per_row():
    hidden = torch.arange(2 * 6 * 1, dtype=torch.float32).view(2, 6, 1)
    ids = torch.tensor([[1, 9, 8, 2, 3, 4], [1, 2, 3, 9, 8, 4]])
    states, rows = gather_signal_states(hidden, ids, [9, 8])
    assert rows.tolist() == [0, 1]
    assert states[:, :, 0].tolist() == [[1.0, 2.0], [9.0, 10.0]]


def test_templates_render_and_supervise_only_replies(tiny_model):
    turns = [Turn(role="user", text="hi <image>"), Turn(role="assistant", text="a cat"), Turn(role="user", text="more")]
    assert VICUNA_V0.render(turns) == "### Human: hi <image>\n### Assistant: a cat\n### Human: more\n### Assistant: "
    assert VICUNA_V1.render(turns[:1]).endswith("USER: hi <image> ASSISTANT: ")
    media = [torch.zeros(1, tiny_model.d_llm)]
    packed = tiny_model.pack(turns[:2], media, add_generation_prompt=False)
    supervised = tiny_model.tokenizer.decode(packed.labels[packed.labels != -100])
    assert supervised == "a cat\n###"
    assert packed.embeds.shape[0] == packed.input_ids.shape[0] == packed.labels.shape[0]
    assert packed.input_ids[0] == tiny_model.tokenizer.bos_token_id


def test_save_and_load_round_trip_gives_identical_outputs(tiny_model, registry, tmp_path):
    model = NextGPTModel(tiny_model.config, registry)
    with torch.no_grad():  # make every trained part differ from its fresh initialisation
        generator = torch.Generator().manual_seed(0)
        for param in [*model.input_projectors.parameters(), *model.output_projectors.parameters()]:
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
        for name, param in model.llm.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
        emb = model.llm.get_input_embeddings().weight
        emb[model.new_token_ids] += 0.5
    model.save_pretrained(tmp_path / "saved")
    saved = {p.name for p in (tmp_path / "saved").iterdir()}
    assert saved == {"config.json", "model.safetensors"}
    state = model.trainable_state_dict()
    assert all("lora_" in k for k in state if k.startswith("llm.lora."))
    assert state["llm.embed_tokens.signal_rows"].shape == (36, model.d_llm)
    assert not any(v.shape[0] == len(model.tokenizer) for v in state.values())  # no full embedding
    trainable_bytes = sum(v.numel() * v.element_size() for v in model.trainable_state_dict().values())
    assert (tmp_path / "saved" / "model.safetensors").stat().st_size < trainable_bytes * 1.05 + 64_000

    loaded = NextGPTModel.from_pretrained(tmp_path / "saved", registry=registry)
    for key, value in model.trainable_state_dict().items():
        torch.testing.assert_close(loaded.trainable_state_dict()[key], value, rtol=0, atol=0)
    messages = ask("make something")
    a = model.generate(messages, request=["image", "audio"], seed=3)
    b = loaded.generate(messages, request=["image", "audio"], seed=3)
    assert a.token_ids == b.token_ids and a.text == b.text
    assert np.array_equal(np.asarray(a.media[0].media), np.asarray(b.media[0].media))
    assert np.array_equal(a.media[1].media.waveform, b.media[1].media.waveform)


def test_named_models_load_from_the_models_folder(tiny_model, registry, tmp_path, monkeypatch):
    monkeypatch.setenv("NEXTGPT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown model .my-model.: not a preset .*a named model in .*home/models"):
        NextGPTModel.from_pretrained("my-model", registry=registry)
    tiny_model.save_pretrained(tmp_path / "home" / "models" / "my-model")
    loaded = NextGPTModel.from_pretrained("my-model", registry=registry)
    assert loaded.signal_ids == tiny_model.signal_ids
    for key, value in tiny_model.trainable_state_dict().items():
        assert torch.equal(loaded.trainable_state_dict()[key], value)


def test_load_reports_missing_and_unused_keys(tiny_model, tmp_path):
    state = tiny_model.trainable_state_dict()
    state["input_projectors.image.extra"] = torch.zeros(1)
    del state["output_projectors.audio.model.bias"]
    with pytest.raises(
        ConfigError,
        match=r"missing keys \['output_projectors.audio.model.bias'\].*unused keys \['input_projectors.image.extra'\]",
    ):
        tiny_model.load_trainable_state_dict(state)


@pytest.mark.parametrize(
    "case",
    ["missing", "empty", "truncated", "mislabelled", "wrong_suffix"],
)
def test_bad_media_files_name_the_file(tiny_model, example_files, tmp_path, case):
    good = example_files["image"]
    bad = tmp_path / "bad.png"
    if case == "empty":
        bad.write_bytes(b"")
    elif case == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "mislabelled":
        bad.write_bytes(example_files["audio"].read_bytes())
    elif case == "wrong_suffix":
        bad = tmp_path / "bad.txt"
        bad.write_text("hello")
    with pytest.raises(MediaError, match=str(bad.name)):
        tiny_model.generate(ask("look", [("image", bad)]))


def test_unknown_modality_and_stray_placeholders(tiny_model):
    with pytest.raises(UnknownModalityError, match="no installed plugin provides modality '3d'"):
        tiny_model.generate(ask("look", [("3d", "chair.ply")]))
    with pytest.raises(ConfigError, match="placeholder '<image>' in text"):
        tiny_model.generate(ask("look at <image>"))
    with pytest.raises(ConfigError, match="request: modality 'smell'"):
        tiny_model.generate(ask("hi"), request=["smell"])


def test_chat_session_keeps_history_after_an_error(tiny_model, example_files, tmp_path):
    import io

    from nextgpt.cli.chat_cmd import ChatSession

    session = ChatSession(tiny_model, tmp_path, max_new_tokens=4)
    (tmp_path / "bad.png").write_text("not a picture")
    script = io.StringIO(
        "hello\n"
        f"/image {tmp_path / 'bad.png'}\n"
        "what is this?\n"
        f"/image {example_files['image']}\n"
        "/request audio\n"
        "and this?\n"
        "/quit\n"
    )
    out = io.StringIO()
    session.interactive(script, out, [], [])
    text = out.getvalue()
    assert "bad.png" in text and "error:" in text and "conversation kept: 1 turns" in text
    assert len(session.history) == 4  # two successful turns, the failed one left no trace
    assert session.history[2]["content"][0] == {"type": "image", "path": str(example_files["image"])}
    assert any(p.suffix == ".wav" for p in tmp_path.iterdir())


def test_chat_commands_are_checked_when_typed(tiny_model, example_files, tmp_path):
    """Unknown commands, modalities and missing files are reported on the line that typed them
    (with a "did you mean"), leave what is pending alone, and /reset clears what is pending."""
    import io

    from nextgpt.cli.chat_cmd import ChatSession

    class Recorder(ChatSession):
        def ask(self, text, attachments, want):
            self.asked.append((text, list(attachments), list(want)))
            return super().ask(text, attachments, want)

    session = Recorder(tiny_model, tmp_path, max_new_tokens=2)
    session.asked = []
    image = str(example_files["image"])
    lines = [
        "/help",
        f"/image {image}",
        "/request smell",
        f"/foo {image}",
        f"/imag {image}",
        f"/image {tmp_path / 'nope.png'}",
        "/request imag",
        "/request image",
        "first",
        "/request image",
        f"/image {image}",
        "/reset",
        "second",
        "/quit",
    ]
    out = io.StringIO()
    session.interactive(io.StringIO("\n".join(lines) + "\n"), out, [], [])
    shown = out.getvalue().splitlines()
    assert any(line.startswith("  /image FILE") for line in shown) and any(
        "/request MODALITY" in line for line in shown
    )
    errors = [line for line in shown if line.startswith("error:")]
    assert (
        errors[0].startswith("error: this model cannot generate 'smell'")
        and "it can generate: audio, image" in errors[0]
    )
    assert errors[1] == "error: unknown command /foo; /help lists the commands"
    assert errors[2].startswith("error: unknown command /imag; did you mean '/image'?")
    assert errors[3] == f"error: {tmp_path / 'nope.png'}: file not found"
    assert "did you mean 'image'?" in errors[4]
    assert len(errors) == 5
    # the good attachment survived the bad commands; /reset dropped what was pending for "second"
    assert session.asked[0] == ("first", [("image", image)], ["image"])
    assert session.asked[1] == ("second", [], [])
    assert len(session.history) == 2  # /reset cleared the first turn
