"""`nextgpt fit`: a LightningCLI over `NextGPTLightningModule` and `NextGPTDataModule`.

Config files are flat (``seed_everything``, ``trainer``, ``model``, ``data``), as
``LightningCLI(run=False)`` reads them; ``nextgpt fit --config FILE`` runs them. Precision,
strategy (ddp, fsdp, deepspeed), devices, nodes, accumulation and gradient clipping are
Lightning's own ``trainer`` settings. The logger defaults to TensorBoard when it is installed,
else CSV; the progress bar is on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning.pytorch.cli import LightningCLI

from nextgpt.training.datamodule import NextGPTDataModule
from nextgpt.training.module import NextGPTLightningModule


def default_logger(save_dir: str = "outputs/train") -> dict[str, Any]:
    """TensorBoard when installed, else CSV (as a LightningCLI class_path mapping)."""
    import importlib.util

    has_tb = any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))
    cls = "TensorBoardLogger" if has_tb else "CSVLogger"
    return {"class_path": f"lightning.pytorch.loggers.{cls}", "init_args": {"save_dir": save_dir, "name": "nextgpt"}}


class NextGPTCLI(LightningCLI):
    """The Lightning CLI of NExT-GPT training. ``args`` as LightningCLI's (with ``run=True``
    the first is the subcommand, e.g. ``["fit", "--config", "stage1.yaml"]``)."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        trainer_defaults = {"logger": default_logger(), "enable_progress_bar": True}
        trainer_defaults.update(kwargs.pop("trainer_defaults", {}))
        super().__init__(
            NextGPTLightningModule,
            NextGPTDataModule,
            args=list(args) if args is not None else None,
            run=run,
            trainer_defaults=trainer_defaults,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("model.plugins", "data.plugins")
        parser.link_arguments("model.cache_dir", "data.cache_media", compute_fn=_is_set)
        parser.link_arguments("model.diffusion_loss_weight", "data.load_outputs", compute_fn=_is_positive)


def _is_set(value: Any) -> bool:
    return value is not None


def _is_positive(value: Any) -> bool:
    return bool(value) and float(value) > 0


class _ParseOnlyCLI(NextGPTCLI):
    def instantiate_classes(self) -> None:  # parse and validate, build nothing
        pass


def parse_config(path: str, overrides: Sequence[str] = ()) -> Any:
    """Parse and type-check a training config without building the model or the trainer (the
    7B configs parse on any machine). Returns the jsonargparse namespace."""
    cli = _ParseOnlyCLI(args=["--config", str(path), *overrides], run=False)
    return cli.config
