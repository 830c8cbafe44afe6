"""Training speed switches of the Lightning module: Liger kernels are refused, with the reason,
where they cannot run (a CPU, an LLM outside the LLaMA family)."""

from __future__ import annotations

import pytest
from nextgpt.errors import ConfigError
from nextgpt.llm import base_model
from nextgpt.training import NextGPTLightningModule


@pytest.fixture(scope="module")
def liger_module():
    module = NextGPTLightningModule("tiny", stage=3, plugins=["image"], modalities=["image"], liger_kernels=True)
    module.configure_model()
    return module


def test_liger_kernels_on_a_cpu_are_a_clear_error(liger_module):
    with pytest.raises(ConfigError, match=r"model\.liger_kernels: .*need a CUDA GPU; this run is on cpu"):
        liger_module.on_fit_start()


def test_liger_kernels_need_a_llama_family_llm(liger_module, monkeypatch):
    monkeypatch.setattr(base_model(liger_module.model.llm).config, "model_type", "gpt2")
    with pytest.raises(ConfigError, match=r"model\.liger_kernels: .*this LLM is 'gpt2'"):
        liger_module.on_fit_start()


def test_liger_kernels_are_off_by_default():
    assert NextGPTLightningModule("tiny", stage=3, plugins=["image"]).hparams.liger_kernels is False
