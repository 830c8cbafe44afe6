"""Sharded-training strategy blocks and their trained-only checkpoints, as far as a CPU can check
them: Lightning and torch run FSDP only on GPUs, and DeepSpeed is not installed here. So: each
block parses over a 7B stage config; a DeepSpeed checkpoint folder (laid out as DeepSpeed writes
one under Lightning) exports to the same model folder as a plain checkpoint; the FSDP strategy
writes and reads the module's trained-only state dict; ZeRO-3's gathering is asked for exactly
the partitioned trainable parameters."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

CONFIGS = Path(__file__).parents[1] / "examples" / "configs"
STRATEGIES = sorted((CONFIGS / "strategies").glob("*.yaml"))


@pytest.mark.parametrize("strategy", STRATEGIES, ids=[s.stem for s in STRATEGIES])
def test_strategy_blocks_parse_over_the_7b_stage_configs(strategy):
    from nextgpt.training.cli import parse_config

    for stage in ("stage1.yaml", "stage3.yaml"):
        parsed = parse_config(str(CONFIGS / stage), ["--config", str(strategy)])
        block = parsed.trainer.strategy
        assert block.class_path.rsplit(".", 1)[-1] in ("TrainedOnlyFSDPStrategy", "DeepSpeedStrategy")
        if "deepspeed" in strategy.stem:
            assert block.init_args.stage == int(strategy.stem[-1])


def test_fsdp_block_builds_its_strategy():
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import Strategy
    from nextgpt.training.strategies import TrainedOnlyFSDPStrategy

    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)
    block = yaml.safe_load((CONFIGS / "strategies" / "fsdp.yaml").read_text())["trainer"]
    strategy = parser.instantiate(parser.parse_object(block)).strategy
    assert isinstance(strategy, TrainedOnlyFSDPStrategy)
    assert strategy.kwargs["use_orig_params"] is True
    assert {c.__name__ for c in strategy.kwargs["auto_wrap_policy"]._module_classes} == {"LlamaDecoderLayer"}


@pytest.fixture(scope="module")
def tiny_checkpoint():
    """A Lightning checkpoint of a tiny stage-1 module, as the trainer writes one (no run)."""
    from nextgpt.training.module import NextGPTLightningModule

    module = NextGPTLightningModule(model="tiny", stage=1, plugins=["image"])
    module.configure_model()
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "global_step": 7}
    module.on_save_checkpoint(checkpoint)
    return module, checkpoint


def test_export_reads_a_deepspeed_checkpoint_folder(tmp_path, tiny_checkpoint, registry):
    from nextgpt.model import NextGPTModel
    from nextgpt.training.export import export_checkpoint, load_checkpoint

    module, checkpoint = tiny_checkpoint
    folder = tmp_path / "last.ckpt"  # what Lightning's DeepSpeedStrategy writes: a folder
    (folder / "checkpoint").mkdir(parents=True)
    client_state = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    module_state = {f"_forward_module.{k}": v for k, v in checkpoint["state_dict"].items()}
    deepspeed_file = {"module": module_state, "ds_version": "0.16.0", "dp_world_size": 2, **client_state}
    torch.save(deepspeed_file, folder / "checkpoint" / "mp_rank_00_model_states.pt")

    loaded = load_checkpoint(folder)
    assert loaded["global_step"] == 7 and set(loaded["state_dict"]) == set(checkpoint["state_dict"])
    exported = NextGPTModel.from_pretrained(export_checkpoint(folder, tmp_path / "model"), registry=registry)
    for key, value in module.model.trainable_state_dict().items():
        assert torch.equal(exported.trainable_state_dict()[key], value), key


def test_a_folder_that_is_no_deepspeed_checkpoint_is_named(tmp_path):
    from nextgpt.errors import ConfigError
    from nextgpt.training.export import load_checkpoint

    with pytest.raises(ConfigError, match=r"not a DeepSpeed checkpoint written by Lightning"):
        load_checkpoint(tmp_path)


def test_fsdp_strategy_writes_and_reads_the_trained_only_state(monkeypatch, tmp_path, tiny_checkpoint):
    import contextlib

    from nextgpt.training.strategies import TrainedOnlyFSDPStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel

    module, checkpoint = tiny_checkpoint
    gathered = []
    monkeypatch.setattr(
        FullyShardedDataParallel,
        "summon_full_params",
        lambda model, **kwargs: gathered.append(kwargs) or contextlib.nullcontext(),
    )
    strategy = TrainedOnlyFSDPStrategy()
    monkeypatch.setattr(TrainedOnlyFSDPStrategy, "lightning_module", property(lambda self: module))
    strategy.model = module
    state = strategy.lightning_module_state_dict()
    assert set(state) == set(module.model.trainable_state_dict())  # not the frozen LLM
    assert gathered[-1]["writeback"] is False
    torch.save(checkpoint, tmp_path / "last.ckpt")
    monkeypatch.setattr(TrainedOnlyFSDPStrategy, "broadcast", lambda self, obj, src=0: obj)
    rest = strategy.load_checkpoint(tmp_path / "last.ckpt")
    assert "state_dict" not in rest and rest["global_step"] == 7
    assert gathered[-1]["writeback"] is True


def test_zero3_gathers_the_partitioned_trainable_parameters(monkeypatch):
    from nextgpt.training.strategies import gathered_trainable

    layer = nn.Linear(2, 2)
    layer.bias.requires_grad_(False)
    calls = []
    fake = types.ModuleType("deepspeed")
    fake.zero = types.SimpleNamespace(
        GatheredParameters=lambda params, modifier_rank=None: (
            calls.append((params, modifier_rank)) or __import__("contextlib").nullcontext()
        )
    )
    monkeypatch.setitem(sys.modules, "deepspeed", fake)
    with gathered_trainable(layer):  # nothing partitioned: DeepSpeed is not asked
        pass
    assert calls == []
    layer.weight.ds_id = 1
    layer.bias.ds_id = 2  # partitioned, but frozen: not gathered
    with gathered_trainable(layer, modifier_rank=0):
        pass
    assert calls == [([layer.weight], 0)]


def test_a_qlora_checkpoint_exports_on_a_cpu(tmp_path, tiny_checkpoint, registry):
    from nextgpt.model import NextGPTModel
    from nextgpt.training.export import export_checkpoint

    module, checkpoint = tiny_checkpoint
    qlora = {**checkpoint, "hyper_parameters": {**checkpoint["hyper_parameters"], "overrides": ["llm.quantization=4"]}}
    torch.save(qlora, tmp_path / "last.ckpt")
    exported = NextGPTModel.from_pretrained(
        export_checkpoint(tmp_path / "last.ckpt", tmp_path / "model"), registry=registry
    )
    assert exported.config.llm.quantization is None  # quantised again with --set where it is used
    for key, value in module.model.trainable_state_dict().items():
        assert torch.equal(exported.trainable_state_dict()[key], value), key


def test_the_gpu_script_lists_a_run_per_strategy_and_qlora():
    import subprocess

    script = Path(__file__).parents[1] / "benchmarks" / "strategies_gpu.py"
    listed = subprocess.run([sys.executable, str(script), "--list"], capture_output=True, text=True, check=True).stdout
    names = [line.split(":", 1)[0] for line in listed.splitlines()]
    assert sorted(set(names)) == sorted([*(s.stem for s in STRATEGIES), "qlora-4bit"])
    assert all(names.count(name) == 2 for name in names)  # fit, then export
