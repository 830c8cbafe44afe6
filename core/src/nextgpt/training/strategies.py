"""Sharded training that still writes trained-only checkpoints.

`NextGPTLightningModule.state_dict` returns only what trains (projectors, signal rows, LoRA), so
a checkpoint is megabytes, not the 7B LLM. Two strategies reach the module's weights another way:

* Lightning's ``FSDPStrategy`` asks the FSDP-wrapped root for its full state dict, which walks
  every parameter and expects each in the result. `TrainedOnlyFSDPStrategy` gathers the sharded
  parameters (``summon_full_params``) and writes the module's own trained state dict instead,
  and loads one back the same way, so ``nextgpt export`` reads its checkpoints as any other.
* DeepSpeed saves ``engine.module.state_dict()``, which reaches the module's ``state_dict``;
  under ZeRO-3 the module gathers its partitioned trained parameters first
  (`gathered_trainable`). Its checkpoints are folders; `deepspeed_checkpoint_file` finds the file
  in one that holds the module state and Lightning's own entries.

Both run only on GPUs (Lightning and torch refuse FSDP on CPU processes; DeepSpeed is not
installed with nextgpt), so the strategy configs in ``examples/configs/strategies`` are checked on
a CPU by parsing only; the DeepSpeed folder reader is tested on a folder laid out as DeepSpeed
writes one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from nextgpt.errors import ConfigError

DEEPSPEED_MODULE_FILE = Path("checkpoint") / "mp_rank_00_model_states.pt"
"""Where, inside a checkpoint folder Lightning's DeepSpeedStrategy writes (tag ``checkpoint``),
DeepSpeed keeps the module state and Lightning's entries (``client_state``)."""

DEEPSPEED_MODULE_PREFIX = "_forward_module."
"""The prefix of the module state's keys: Lightning wraps the LightningModule before DeepSpeed."""


class TrainedOnlyFSDPStrategy(FSDPStrategy):
    """Lightning's ``FSDPStrategy`` whose checkpoints hold the trained parameters only (gathered
    on rank 0, as ``state_dict_type: full`` does), in the keys of
    ``NextGPTLightningModule.state_dict``."""

    def lightning_module_state_dict(self) -> dict[str, Any]:
        from torch.distributed.fsdp import FullyShardedDataParallel

        with FullyShardedDataParallel.summon_full_params(self.model, writeback=False, offload_to_cpu=True):
            return self.lightning_module.state_dict()

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        from torch.distributed.fsdp import FullyShardedDataParallel

        path = Path(self.broadcast(checkpoint_path))
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        with FullyShardedDataParallel.summon_full_params(self.model, writeback=True):
            self.lightning_module.load_state_dict(checkpoint.pop("state_dict"))
        return checkpoint


def partitioned(parameters: list[nn.Parameter]) -> list[nn.Parameter]:
    """The parameters DeepSpeed ZeRO-3 has partitioned (they carry its ``ds_id``)."""
    return [p for p in parameters if hasattr(p, "ds_id")]


@contextlib.contextmanager
def gathered_trainable(module: nn.Module, modifier_rank: int | None = None) -> Iterator[None]:
    """Gather ``module``'s ZeRO-3 partitioned trainable parameters for the block (a no-op
    without DeepSpeed ZeRO-3). ``modifier_rank``: the rank whose changes are kept (loading)."""
    params = partitioned([p for p in module.parameters() if p.requires_grad])
    if not params:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=modifier_rank):
        yield


def deepspeed_checkpoint_file(folder: Path) -> Path:
    """The file of a DeepSpeed checkpoint folder that holds the module state and Lightning's
    entries; `ConfigError` naming the folder when it is not one."""
    path = folder / DEEPSPEED_MODULE_FILE
    if not path.is_file():
        raise ConfigError(
            f"{folder}: a folder, but not a DeepSpeed checkpoint written by Lightning (no {DEEPSPEED_MODULE_FILE})"
        )
    return path


def from_deepspeed_layout(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A DeepSpeed checkpoint file's contents as a Lightning checkpoint: ``state_dict`` from its
    module state (Lightning's wrapper prefix removed), the other entries as Lightning saved them."""
    module = raw.get("module")
    if not isinstance(module, Mapping):
        raise ConfigError("DeepSpeed checkpoint: no module state ('module')")
    checkpoint = {k: v for k, v in raw.items() if k != "module"}
    checkpoint["state_dict"] = {key.removeprefix(DEEPSPEED_MODULE_PREFIX): value for key, value in module.items()}
    return checkpoint
