"""``recipe: legacy`` trains the way the 2023 release did; ``default`` keeps today's choices."""

from __future__ import annotations

import pytest
import torch

PLUGINS = ["image", "audio", "video"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_module(stage, **kwargs):
    from nextgpt.training.module import NextGPTLightningModule

    module = NextGPTLightningModule("tiny", stage=stage, plugins=PLUGINS, **kwargs)
    module.configure_model()
    return module


def embedding_weights(module):
    from nextgpt.llm import base_model

    inner = base_model(module.model.llm)
    return [inner.get_input_embeddings().weight, inner.get_output_embeddings().weight]


@pytest.mark.parametrize("stage", [1, 3])
def test_legacy_trains_whole_embeddings_in_every_stage_with_decay_on_everything(stage):
    default, legacy = make_module(stage), make_module(stage, recipe="legacy")
    assert default.hparams.lr == 4e-4 and legacy.hparams.lr == 5e-4
    assert make_module(stage, recipe="legacy", lr=1e-3).hparams.lr == 1e-3
    assert not any(w.requires_grad for w in embedding_weights(default))
    assert all(w.requires_grad for w in embedding_weights(legacy))
    assert legacy.model.config.llm.train_embeddings == "full"
    groups = legacy.parameter_groups()
    assert [g["weight_decay"] for g in groups] == [legacy.hparams.weight_decay]
    assert {0.0, default.hparams.weight_decay} == {g["weight_decay"] for g in default.parameter_groups()}


def test_legacy_weighs_every_modality_one_in_stage_2_and_by_loss_weight_in_stage_3(tmp_path, registry):
    from nextgpt.data import DatasetSource, NextGPTDataset, collate_samples
    from nextgpt.data.synthetic import write_synthetic_dataset

    specs = {name: registry.modality(name) for name in PLUGINS}
    data = write_synthetic_dataset(tmp_path, specs, per_modality=1)
    weights = {}
    for stage, recipe in [(2, "legacy"), (3, "legacy"), (2, "default")]:
        module = make_module(stage, recipe=recipe)
        dataset = NextGPTDataset(
            [DatasetSource(path=str(data["instruction"]), format="instruction")], module.model.specs
        )
        batch = collate_samples([dataset[i] for i in range(len(dataset))])
        weights[stage, recipe] = module.compute_losses(batch).weights
    assert weights[2, "legacy"] == {"image": 1.0, "audio": 1.0, "video": 1.0}
    assert weights[3, "legacy"]["video"] == 2.0 and weights[2, "default"]["video"] == 2.0


def test_unknown_recipe_is_named():
    from nextgpt.errors import ConfigError
    from nextgpt.training.module import NextGPTLightningModule

    with pytest.raises(ConfigError, match=r"model.recipe: unknown recipe 'legacyy'; did you mean 'legacy'"):
        NextGPTLightningModule("tiny", recipe="legacyy")


def test_legacy_caption_prompt_reaches_sources_without_one():
    from pathlib import Path

    from nextgpt.training.cli import parse_config
    from nextgpt.training.datamodule import NextGPTDataModule

    train = [{"path": "a.json", "format": "pairs"}, {"path": "b.json", "format": "pairs", "prompt": "Describe it."}]
    legacy = NextGPTDataModule(train, plugins=PLUGINS, recipe="legacy")
    assert [s.prompt for s in legacy.train_sources] == ["generate a caption", "Describe it."]
    default = NextGPTDataModule(train, plugins=PLUGINS)
    assert [s.prompt for s in default.train_sources] == ["Generate a caption.", "Describe it."]
    config = Path(__file__).parents[1] / "examples" / "configs" / "tiny_stage1.yaml"
    assert parse_config(str(config), ["--model.recipe", "legacy"]).data.recipe == "legacy"


def test_legacy_cuts_long_stage_2_captions_from_the_start():
    """Two captions past the text encoder's 77 tokens that differ only in their first word: cut
    at the end (default) their targets differ; cut at the start (legacy) they are the same."""
    from nextgpt_image.decoder import StableDiffusionDecoder

    tail = " and a red circle at the top left" * 12  # well over 77 tokens
    captions = ["cat" + tail, "dog" + tail]
    default = StableDiffusionDecoder("tiny")
    cut_end = default.condition_from_text(captions)["prompt_embeds"]
    assert not torch.allclose(cut_end[0], cut_end[1])
    legacy = StableDiffusionDecoder("tiny")
    assert legacy.cut_long_captions_at_start() and legacy.identity != default.identity
    cut_start = legacy.condition_from_text(captions)["prompt_embeds"]
    assert torch.allclose(cut_start[0], cut_start[1])
    short = legacy.condition_from_text(["a cat"])["prompt_embeds"]  # short captions are unchanged
    assert torch.equal(short, default.condition_from_text(["a cat"])["prompt_embeds"])

    module = make_module(2, recipe="legacy")
    assert all(d.identity.endswith("+captions-cut-at-start") for d in module.model.decoders.values())
    assert not any(d.identity.endswith("+captions-cut-at-start") for d in make_module(2).model.decoders.values())
