"""Placement and memory: device names, dtypes, decoders following ``model.to()``, the memory plan
on meta tensors, decoder offload through diffusers' hooks, and the 8/4-bit LLM settings (on a
CPU: their wiring and their errors; bitsandbytes itself needs a CUDA GPU)."""

from __future__ import annotations

import pytest
import torch
from nextgpt.errors import ConfigError

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what happens without a GPU")


# -- device names ---------------------------------------------------------------------------------


@no_gpu
def test_auto_picks_the_cpu_without_a_gpu():
    from nextgpt.placement import resolve_device

    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    assert resolve_device(None) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [("gpu", "did you mean 'cuda'"), ("cpu:1", "is not a device"), ("cuda:x", "is not a device"), ("tpu", "auto")],
)
def test_bad_device_name_is_an_error_naming_the_option(name, expected):
    from nextgpt.placement import resolve_device

    with pytest.raises(ConfigError, match=r"^--device: .*") as caught:
        resolve_device(name, "--device")
    assert expected in str(caught.value)


@no_gpu
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_absent_gpu_is_an_error_naming_the_option(name):
    from nextgpt.placement import resolve_device

    with pytest.raises(ConfigError, match=rf"^--device: {name} asked for, but torch sees no CUDA GPU"):
        resolve_device(name, "--device")


@no_gpu
def test_from_pretrained_refuses_an_absent_gpu_before_loading(monkeypatch, registry):
    from nextgpt import model as model_module

    monkeypatch.setattr(model_module, "load_llm", lambda *a, **k: pytest.fail("loaded before checking the device"))
    with pytest.raises(ConfigError, match="^device: cuda asked for"):
        model_module.NextGPTModel.from_pretrained("tiny", registry=registry, device="cuda")


# -- dtype and model.to() -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bf16_image_model(registry):
    """A tiny image-only model with its frozen parts in bfloat16 (this module moves it)."""
    from nextgpt.model import NextGPTModel

    return NextGPTModel.from_pretrained("tiny", registry=registry, modalities=["image"], torch_dtype="bfloat16")


def test_torch_dtype_applies_to_frozen_parts_and_lazy_decoders(bf16_image_model):
    model = bf16_image_model
    base = [p for n, p in model.llm.named_parameters() if "lora" not in n]
    assert {p.dtype for p in base} == {torch.bfloat16}
    assert next(model.encoders["image"].backbone.parameters()).dtype == torch.bfloat16
    assert next(model.input_projectors["image"].parameters()).dtype == torch.float32  # trained: float32
    assert next(model.output_projectors["image"].parameters()).dtype == torch.float32
    decoder = model.decoders["image"]
    assert not decoder.is_loaded
    assert decoder.pipeline.unet.dtype == torch.bfloat16  # loads in the model's dtype, on its device
    assert decoder.pipeline.unet.device == model.device


def test_model_to_moves_the_decoders(bf16_image_model):
    model = bf16_image_model
    decoder = model.decoders["image"]
    assert decoder.pipeline is not None  # loaded: the move must reach the loaded pipeline
    model.to(torch.float32)
    assert decoder.pipeline.unet.dtype == torch.float32
    assert decoder.pipeline.text_encoder.dtype == torch.float32
    model.half()
    assert decoder.pipeline.vae.dtype == torch.float16
    model.to("meta")  # a device this machine has, other than the CPU
    assert decoder.pipeline.unet.device.type == "meta"
    assert model.device.type == "meta"


# -- the memory plan ------------------------------------------------------------------------------


def test_memory_plan_figures_equal_the_built_model(tiny_model, registry):
    from nextgpt.memory import memory_plan

    plan = memory_plan(tiny_model.config, registry)
    rows = {row.component: row for row in plan.rows}
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    lora = sum(p.numel() for n, p in tiny_model.llm.named_parameters() if "lora_" in n)
    assert rows["llm: LoRA adapters"].parameters == lora
    base = sum(p.numel() for n, p in tiny_model.llm.named_parameters() if "lora_" not in n)
    assert rows["llm (tiny)"].parameters + rows["llm: signal-token rows"].parameters == base
    encoders = [rows[f"{name} encoder (imagebind)"] for name in ("image", "audio", "video")]
    assert sum(row.parameters for row in encoders) == count(tiny_model.encoders["image"].backbone)
    assert sum(row.note.endswith("network, counted there") for row in encoders) == 2  # one backbone, counted once
    for name in ("image", "audio", "video"):
        assert rows[f"{name} input projector"].parameters == count(tiny_model.input_projectors[name])
        assert rows[f"{name} output projector"].parameters == count(tiny_model.output_projectors[name])
    pipeline = tiny_model.decoders["image"].pipeline
    for part in ("unet", "vae", "text_encoder"):
        assert rows[f"image decoder (stable-diffusion): {part}"].parameters == count(getattr(pipeline, part))
    assert rows["llm (tiny)"].bytes == 4 * rows["llm (tiny)"].parameters  # float32
    assert "total on cpu" in plan.table()


def test_memory_plan_follows_dtype_device_offload_and_quantization(registry):
    from nextgpt.memory import memory_plan
    from nextgpt.overrides import Overrides, planned_config

    settings = ["modalities.image.decoder.options.offload=model", "llm.quantization=4"]
    config = planned_config("tiny", Overrides.of(settings), registry, ["image"])
    plan = memory_plan(config, registry, device=torch.device("meta"), torch_dtype=torch.bfloat16)
    rows = {row.component: row for row in plan.rows}
    assert rows["image decoder (stable-diffusion): unet"].device == "cpu"  # offloaded between uses
    assert rows["image decoder (stable-diffusion): unet"].dtype == "bfloat16"
    assert rows["image encoder (imagebind)"].device == "meta"
    llm = rows["llm (tiny)"]
    assert llm.dtype == "4-bit"
    assert llm.bytes < 2 * llm.parameters  # less than bfloat16 everywhere
    assert set(plan.totals()) == {"cpu", "meta"}


def test_dry_run_prints_the_plan_without_loading(monkeypatch, capsys):
    from nextgpt import model as model_module
    from nextgpt.cli import main

    monkeypatch.setattr(model_module, "load_llm", lambda *a, **k: pytest.fail("--dry-run loaded the model"))
    assert main(["chat", "--dry-run", "--device", "cpu", "--dtype", "float16", "-p", "hi"]) == 0
    out = capsys.readouterr().out
    assert "memory plan" in out and "float16" in out and "llm (tiny)" in out


def test_demo_and_eval_take_the_placement_options(monkeypatch, capsys, tmp_path):
    from nextgpt import model as model_module
    from nextgpt.cli import main

    monkeypatch.setattr(model_module, "load_llm", lambda *a, **k: pytest.fail("--dry-run loaded the model"))
    data = tmp_path / "pairs.json"
    data.write_text("[]")
    evaluate = ["eval", "--model", "tiny", "--task", "caption", "--modality", "image", "--data", str(data)]
    for argv in (["demo", "--out", str(tmp_path / "demo")], evaluate):
        assert main([*argv, "--dry-run", "--device", "cuda:1", "--dtype", "bfloat16"]) == 0  # planned for a GPU
        out = capsys.readouterr().out
        assert "memory plan" in out and "cuda:1" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["chat", "--device", "gpu", "-p", "hi"], "--device: 'gpu' is not a device"),
        (["demo", "--dtype", "float8"], "--dtype: expected one of"),
        (["chat", "--set", "llm.quantization=3", "-p", "hi"], "llm.quantization.bits"),
    ],
)
def test_placement_options_are_checked_before_loading(monkeypatch, capsys, argv, message):
    from nextgpt import model as model_module
    from nextgpt.cli import main

    monkeypatch.setattr(model_module, "load_llm", lambda *a, **k: pytest.fail("loaded before checking"))
    assert main(argv) == 1
    assert message in capsys.readouterr().err


# -- offload --------------------------------------------------------------------------------------


def test_offload_uses_diffusers_hooks_and_gives_the_same_media():
    import numpy as np
    from nextgpt.config import DecodeOptions
    from nextgpt_image.decoder import StableDiffusionDecoder

    plain = StableDiffusionDecoder("tiny", device="cpu")
    offloaded = StableDiffusionDecoder("tiny", device="cpu", offload="model")
    condition = plain.condition_from_text(["a red square"])
    images = [d.generate(condition, DecodeOptions(seed=3))[0] for d in (plain, offloaded)]
    assert offloaded.pipeline._all_hooks  # accelerate's hooks, installed by enable_model_cpu_offload
    assert not getattr(plain.pipeline, "_all_hooks", None)
    np.testing.assert_allclose(np.asarray(images[0], float), np.asarray(images[1], float), atol=1)


def test_unknown_offload_mode_names_the_option():
    from nextgpt_image.decoder import StableDiffusionDecoder

    with pytest.raises(ConfigError, match="offload='cpu'; expected one of model, sequential"):
        StableDiffusionDecoder("tiny", offload="cpu")


# -- 8 / 4 bits -----------------------------------------------------------------------------------


def test_quantization_settings_and_their_errors(monkeypatch):
    from nextgpt.config import LLMConfig
    from nextgpt.llm import quantization_kwargs

    settings = LLMConfig(quantization=4).quantization
    assert settings.bits == 4 and settings.quant_type == "nf4" and settings.double_quant
    with pytest.raises(ConfigError, match=r"^llm.quantization \(4-bit\): bitsandbytes quantises on a CUDA GPU"):
        quantization_kwargs(settings, torch.device("cpu"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "bitsandbytes" else object())
    with pytest.raises(ConfigError, match="needs the bitsandbytes package"):
        quantization_kwargs(settings, torch.device("cuda", 0))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())
    kwargs = quantization_kwargs(settings, torch.device("cuda", 0))
    config = kwargs["quantization_config"]
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert kwargs["device_map"] == {"": torch.device("cuda", 0)}
    eight = quantization_kwargs(LLMConfig(quantization={"bits": 8}).quantization, torch.device("cuda", 0))
    assert eight["quantization_config"].load_in_8bit


def test_quantized_model_on_cpu_is_refused_before_loading(registry, monkeypatch):
    from nextgpt.model import NextGPTModel
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(ConfigError, match="llm.quantization"):
        NextGPTModel.from_pretrained("tiny", registry=registry, overrides=["llm.quantization=8"], device="cpu")


def test_qlora_training_loads_the_quantized_llm_on_the_trainers_device_only():
    from nextgpt.training.module import NextGPTLightningModule

    module = NextGPTLightningModule(model="tiny", stage=3, plugins=["image"], overrides=["llm.quantization=4"])
    with pytest.raises(ConfigError, match=r"^llm.quantization \(4-bit\): bitsandbytes quantises on a CUDA GPU"):
        module.configure_model()  # no trainer here: nowhere on a GPU to quantise


def test_a_model_folder_takes_quantization_and_offload_overrides(tmp_path, tiny_model, registry):
    from nextgpt.overrides import Overrides, planned_config

    folder = tiny_model.save_pretrained(tmp_path / "model")
    settings = ["llm.quantization=8", "modalities.image.decoder.options.offload=sequential"]
    config = planned_config(folder, Overrides.of(settings), registry)
    assert config.llm.quantization.bits == 8
    assert config.modalities["image"]["decoder"]["options"]["offload"] == "sequential"
