"""Training treats the third-party 3d modality like any other: tiny stage-1 and stage-2 runs."""

from __future__ import annotations

import math

import pytest
import torch

PLUGINS = ["3d"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    from nextgpt.data.synthetic import write_synthetic_dataset
    from nextgpt.plugins import load_plugins

    registry = load_plugins(allow=PLUGINS)
    root = tmp_path_factory.mktemp("data3d")
    return write_synthetic_dataset(root, {"3d": registry.modality("3d")}, per_modality=3)["pairs"]


@pytest.mark.parametrize(
    ("stage", "task", "trained", "frozen"),
    [
        (1, "caption", "input_projectors.3d.", "output_projectors.3d."),
        (2, "generate", "output_projectors.3d.", "input_projectors.3d."),
    ],
)
def test_tiny_stage_on_3d(tmp_path, pairs, stage, task, trained, frozen):
    from lightning.pytorch import Trainer
    from nextgpt.training.datamodule import NextGPTDataModule
    from nextgpt.training.module import NextGPTLightningModule

    torch.set_num_threads(1)
    module = NextGPTLightningModule("tiny", stage=stage, plugins=PLUGINS, lr=1e-2, warmup_steps=0, schedule="constant")
    module.configure_model()
    before = {k: v.clone() for k, v in module.model.trainable_state_dict().items()}
    data = NextGPTDataModule(
        [{"path": str(pairs), "format": "pairs", "task": task}], batch_size=3, plugins=PLUGINS, shuffle=False
    )
    trainer = Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, data)
    after = module.model.trainable_state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(trained))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(frozen))
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    if stage == 2:
        assert math.isfinite(float(trainer.callback_metrics["train/align_3d"]))
