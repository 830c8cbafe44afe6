"""Choosing a model's configuration without Python: ``--config FILE`` and ``--set KEY=VALUE`` on
every command that builds a model, a folder started with a new decoder from the command line, and
the training commands' spellings of the same. Driven through `nextgpt.cli.main`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from nextgpt.cli import main
from nextgpt.errors import ConfigError, NextGPTWarning

REPO = Path(__file__).parents[1]
TINY_STAGE1 = REPO / "examples" / "configs" / "tiny_stage1.yaml"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXTGPT_PLUGINS", "image,audio,video")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def built(monkeypatch):
    """The models the commands build (through `NextGPTModel.from_pretrained`), in order."""
    from nextgpt.model import NextGPTModel

    models = []
    real = NextGPTModel.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        models.append(real(cls, *args, **kwargs))
        return models[-1]

    monkeypatch.setattr(NextGPTModel, "from_pretrained", classmethod(spy))
    return models


@pytest.fixture
def no_model(monkeypatch):
    from nextgpt.model import NextGPTModel

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(NextGPTModel, "from_pretrained", refuse)


def error_line(capsys, *argv: str, after_log: bool = False) -> str:
    """The command's standard error: exactly one ``error:`` line (``after_log``: the last line,
    after Lightning's log lines)."""
    assert main(list(argv)) == 1
    err = capsys.readouterr().err
    if after_log:
        err = err.splitlines(keepends=True)[-1]
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


def test_config_file_and_set_reach_the_model_chat_builds(workdir, built, capsys):
    (workdir / "small.yaml").write_text(
        "llm: {max_new_tokens: 5}\nmodalities:\n  image: {decode: {steps: 1, height: 16, width: 16}}\n"
    )
    code = main(
        [
            "chat",
            "-p",
            "draw",
            "--config",
            "small.yaml",
            "--set",
            "llm.max_new_tokens=3",  # after the file: it wins
            "--set",
            "modalities.image.decoder.backend=pixart-sigma",
            "--set",
            "llm.lora.target_modules=[q_proj]",  # YAML values: a list
            "--request",
            "image",
            "--out",
            "o",
        ]
    )
    assert code == 0, capsys.readouterr().err
    model = built[-1]
    assert model.config.llm.max_new_tokens == 3
    assert model.config.llm.lora.target_modules == ["q_proj"]
    assert model.modality_configs["image"].decode.steps == 1 and model.modality_configs["image"].decode.height == 16
    assert type(model.decoders["image"]).__name__ == "PixArtSigmaDecoder"
    assert model.modality_configs["audio"].decoder.backend == "audioldm"  # the rest as the preset has it
    assert len(list((workdir / "o").glob("*.png"))) == 1


def test_bad_overrides_are_one_line_naming_key_value_and_reason_before_loading(workdir, no_model, capsys):
    assert error_line(capsys, "chat", "-p", "hi", "--set", "llm.max_new_token=64") == (
        "error: --set llm.max_new_token=64: no such setting; did you mean 'max_new_tokens'? "
        "(llm has: source, template, system_prompt, lora, train_embeddings, dtype, media_wrap, "
        "bos_per_text_chunk, max_new_tokens, temperature, top_p, quantization, cache, licence)"
    )
    assert error_line(capsys, "chat", "-p", "hi", "--set", "llm.max_new_tokens=-1") == (
        "error: --set llm.max_new_tokens=-1: Input should be greater than 0 (got -1)"
    )
    assert error_line(capsys, "demo", "--set", "modalities.image.decoder.bakend=pixart-sigma").startswith(
        "error: --set modalities.image.decoder.bakend=pixart-sigma: no such setting; did you mean 'backend'?"
    )
    assert error_line(capsys, "chat", "-p", "hi", "--set", "modalities.image.decoder.backend=pixart") == (
        "error: --set modalities.image.decoder.backend=pixart: no installed plugin provides a decoder backend "
        "'pixart' for modality 'image'; did you mean 'pixart-sigma'? "
        "(available: flux-schnell, pixart-sigma, stable-diffusion)"
    )
    assert error_line(capsys, "chat", "-p", "hi", "--set", "modalities.imgae.decode.steps=2") == (
        "error: --set modalities.imgae.decode.steps=2: modalities.imgae: preset tiny has no modality 'imgae'; "
        "did you mean 'image'? (it has: audio, image, video)"
    )
    assert error_line(capsys, "chat", "-p", "hi", "--set", "llm.lora={r: 0}") == (
        "error: --set llm.lora={r: 0}: llm.lora.r: Input should be greater than 0 (got 0)"
    )
    assert error_line(capsys, "chat", "-p", "hi", "--set", "max_new_tokens") == (
        "error: --set 'max_new_tokens': expected KEY=VALUE with a dotted KEY, e.g. llm.max_new_tokens=64"
    )
    assert "the value is not YAML or JSON" in error_line(capsys, "chat", "-p", "hi", "--set", "llm.top_p={0.9")
    # a decoder taken away: what the model can generate is checked against the overridden config
    assert error_line(capsys, "chat", "-p", "hi", "--set", "modalities.image.decoder=null", "--request", "image") == (
        "error: --request: this model cannot generate 'image' (it can generate: audio, video)"
    )


def test_config_file_problems_name_the_file(workdir, no_model, capsys, tmp_path):
    data = workdir / "data.json"
    data.write_text("[]")
    (workdir / "bad.yaml").write_text("llm:\n  temperature: -1\n  max_new_tokens: [\n")
    (workdir / "list.yaml").write_text("- llm\n")
    (workdir / "typo.json").write_text(json.dumps({"llm": {"temprature": 0.5}}))
    eval_args = ["eval", "--model", "tiny", "--task", "caption", "--modality", "image", "--data", str(data)]
    assert error_line(capsys, *eval_args, "--config", "typo.json") == (
        "error: typo.json: llm.temprature: no such setting; did you mean 'temperature'? (llm has: source, template, "
        "system_prompt, lora, train_embeddings, dtype, media_wrap, bos_per_text_chunk, max_new_tokens, "
        "temperature, top_p, quantization, cache, licence)"
    )
    assert error_line(capsys, "chat", "-p", "hi", "--config", "bad.yaml").startswith("error: bad.yaml: not YAML: ")
    assert "(line 4, column 1)" in error_line(capsys, "chat", "-p", "hi", "--config", "bad.yaml")
    assert error_line(capsys, "demo", "--config", "list.yaml") == (
        "error: list.yaml: expected a mapping of settings (llm, modalities, seed), got list"
    )
    assert error_line(capsys, "chat", "-p", "hi", "--config", "missing.yaml") == ("error: missing.yaml: file not found")


def test_a_folder_started_with_a_new_decoder_from_the_command_line(workdir, tiny_model, built, capsys):
    """Over a folder the decoder can change (only the projectors whose shapes changed start
    afresh, named in a warning); what its trained weights depend on cannot (one line, naming it)."""
    folder = tiny_model.save_pretrained(workdir / "saved")
    args = ["chat", "--model", "saved", "-p", "draw", "--request", "image", "--out", "o"]
    with pytest.warns(NextGPTWarning, match=r"output projector 'image' re-initialised: its decoder changed from "):
        assert main([*args, "--set", "modalities.image.decoder.backend=pixart-sigma"]) == 0
    model = built[-1]
    assert type(model.decoders["image"]).__name__ == "PixArtSigmaDecoder"
    saved = tiny_model.trainable_state_dict()
    loaded = model.trainable_state_dict()
    for key, value in saved.items():  # everything but the image output projector is as trained
        if not key.startswith("output_projectors.image."):
            assert torch.equal(loaded[key], value), key
    assert any(loaded[k].shape != v.shape for k, v in saved.items() if k.startswith("output_projectors.image."))

    with warnings.catch_warnings():
        warnings.simplefilter("error", NextGPTWarning)  # same shapes: nothing re-initialised
        assert main([*args, "--set", "llm.max_new_tokens=2", "--set", "modalities.image.decode.steps=1"]) == 0
    assert built[-1].config.llm.max_new_tokens == 2
    assert (folder / "config.json").is_file()

    refused = error_line(capsys, *args, "--set", "llm.lora.r=8")
    assert refused.startswith(
        f"error: --set llm.lora.r=8: llm.lora.r cannot change over the model folder {Path('saved') / 'config.json'}, "
        "whose trained weights depend on it (over a folder these can: seed, llm.source"
    )
    assert error_line(capsys, *args, "--set", "modalities.image.decoder=null") == (
        "error: --set modalities.image.decoder=null: modalities.image.decoder: a model folder's decoder can be "
        f"replaced, not removed ({Path('saved') / 'config.json'} trained an output projector for it)"
    )


def test_from_pretrained_takes_the_same_overrides_as_a_mapping(registry):
    from nextgpt.overrides import Overrides, planned_config

    config = planned_config(
        "tiny",
        Overrides.of({"llm.max_new_tokens": 7, "modalities": {"image": {"decode.steps": 3}}}),
        registry,
    )
    assert config.llm.max_new_tokens == 7 and config.modalities["image"]["decode"]["steps"] == 3
    assert config.modalities["image"]["decode"]["height"] == 32  # laid over: the rest kept
    # --set replaces the whole value at its key; a file or mapping merges into it
    replaced = planned_config("tiny", Overrides.of(["modalities.image.decode={steps: 3}"]), registry)
    assert replaced.modalities["image"]["decode"] == {"steps": 3}
    with pytest.raises(ConfigError, match=r"^overrides: llm.temprature: no such setting; did you mean"):
        planned_config("tiny", Overrides.of({"llm": {"temprature": 1}}), registry)


def test_fit_and_cache_take_model_and_set(workdir, tiny_model, capsys):
    from nextgpt.cli.fit_cmd import lightning_arguments
    from nextgpt.training.cli import parse_config

    argv = ["--config", "c.yaml", "--model", "toy", "--set", "llm.max_new_tokens=5", "--set=seed=3", "--model=x"]
    assert lightning_arguments(argv) == [
        "--config",
        "c.yaml",
        "--model.model=toy",
        "--model.overrides+=llm.max_new_tokens=5",
        "--model.overrides+=seed=3",
        "--model.model=x",
    ]
    folder = str(tiny_model.save_pretrained(workdir / "saved"))
    parsed = parse_config(str(TINY_STAGE1), lightning_arguments(["--model", folder, "--set", "seed=3"]))
    assert parsed.model.model == folder and parsed.model.overrides == ["seed=3"]
    # a bad setting stops fit (and cache) with one line before anything trains
    train = json.dumps([{"path": "none.json", "format": "pairs", "task": "caption"}])
    fit = ["fit", "--config", str(TINY_STAGE1), "--data.train", train, "--trainer.enable_progress_bar=false"]
    assert error_line(capsys, *fit, "--set", "llm.max_new_token=5", after_log=True).startswith(
        "error: model.overrides llm.max_new_token=5: no such setting; did you mean 'max_new_tokens'?"
    )
    cache = ["cache", "--config", str(TINY_STAGE1), "--cache-dir", "c", "--set", "seed=x"]
    assert error_line(capsys, *cache, after_log=True).startswith(
        "error: model.overrides seed=x: Input should be a valid integer"
    )


def test_the_lightning_module_applies_its_overrides():
    from nextgpt.training.module import NextGPTLightningModule

    module = NextGPTLightningModule("tiny", plugins=["image"], overrides=["llm.max_new_tokens=5", "seed=4"])
    module.configure_model()
    assert module.model.config.llm.max_new_tokens == 5 and module.model.config.seed == 4
