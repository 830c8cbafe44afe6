"""`nextgpt fit`: a LightningCLI over `NextGPTLightningModule` and `NextGPTDataModule`.

Config files are flat (``seed_everything``, ``trainer``, ``model``, ``data``), as
``LightningCLI(run=False)`` reads them; ``nextgpt fit --config FILE`` runs them. Precision,
strategy (ddp, fsdp, deepspeed), devices, nodes, accumulation and gradient clipping are
Lightning's own ``trainer`` settings. The logger defaults to TensorBoard when it is installed,
else CSV; the progress bar is on.

What ``nextgpt fit`` adds to Lightning's own behaviour, so that nothing runs that should not and
nothing is lost:

* checkpoints are always read with ``weights_only=True`` (``--weights_only false`` is refused:
  it would let a crafted checkpoint run code);
* a fresh run (no ``--ckpt_path``) refuses a checkpoint folder that already holds checkpoints of
  an earlier run, unless ``--overwrite true``;
* Ctrl-C or an exception saves ``interrupted.ckpt`` at the step reached
  (`nextgpt.training.interrupt.InterruptCheckpoint`), and ``--ckpt_path last`` resumes from it
  when it is the newest checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from nextgpt.errors import ConfigError
from nextgpt.training.datamodule import NextGPTDataModule
from nextgpt.training.export import check_checkpoint
from nextgpt.training.interrupt import InterruptCheckpoint
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
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="start afresh even if the checkpoint folder holds checkpoints of an earlier run (may replace them)",
        )
        parser.link_arguments("model.plugins", "data.plugins")
        parser.link_arguments("model.recipe", "data.recipe")
        parser.link_arguments("model.cache_dir", "data.cache_media", compute_fn=_is_set)
        parser.link_arguments("model.diffusion_loss_weight", "data.load_outputs", compute_fn=_is_positive)

    def before_instantiate_classes(self) -> None:
        """Check ``model.overrides`` against the model's configuration before anything is built:
        an unknown key or a bad value is one line, not a traceback after the trainer started."""
        settings = self.config.get(self.subcommand) if self.subcommand else self.config
        model = settings.get("model") if settings is not None else None
        if model is None or not model.get("overrides"):
            return
        from nextgpt.overrides import Overrides, planned_config
        from nextgpt.plugins import default_registry, load_plugins

        registry = load_plugins(allow=model.plugins) if model.get("plugins") else default_registry()
        overrides = Overrides.from_assignments(model.overrides, "model.overrides")
        planned_config(model.model, overrides, registry, model.get("modalities"))

    def _parse_ckpt_path(self) -> None:
        """Lightning reads the model settings of a ``--ckpt_path FILE`` into the config; first check
        the file (a clear error naming it), and keep an explicit ``--model.schedule_steps`` (the
        documented way to change the schedule on resume) over the checkpoint's."""
        subcommand = self.config.get("subcommand")
        settings = self.config.get(subcommand) if subcommand else None
        if settings is None:
            return super()._parse_ckpt_path()
        ckpt_path = settings.get("ckpt_path")
        if ckpt_path and ckpt_path not in LIGHTNING_CKPT_NAMES:
            check_checkpoint(ckpt_path)
        chosen = settings.get("model.schedule_steps")
        super()._parse_ckpt_path()
        if chosen is not None:
            self.config[subcommand]["model.schedule_steps"] = chosen

    def before_fit(self) -> None:
        """Refuse unsafe or destructive settings and add the interrupt checkpoint (see the module
        docstring); runs after the classes are built and before anything is trained."""
        settings = self.config_init[self.subcommand]
        if settings.get("weights_only") is False:
            raise ConfigError(
                "--weights_only false: refused; loading a checkpoint that way runs any code stored in it. "
                "nextgpt checkpoints hold only tensors and plain data and load with weights_only=True"
            )
        settings["weights_only"] = True
        folders = checkpoint_folders(self.trainer)
        interrupt = InterruptCheckpoint(folders[0] if folders else Path(self.trainer.default_root_dir) / "checkpoints")
        if not any(isinstance(c, InterruptCheckpoint) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(interrupt)
        ckpt_path = settings.get("ckpt_path")
        if ckpt_path is None and not settings.get("overwrite"):
            for folder in folders:
                found = sorted(p.name for p in folder.glob("*.ckpt"))
                if found:
                    shown = ", ".join(found[:4]) + (" ..." if len(found) > 4 else "")
                    raise ConfigError(
                        f"{folder}: holds checkpoints of an earlier run ({shown}); resume it with --ckpt_path last, "
                        "or start afresh with --overwrite true (files of the same name are then replaced)"
                    )
        if ckpt_path == "last":
            settings["ckpt_path"] = newest_last_checkpoint(interrupt.checkpoint_path(self.trainer), folders) or "last"
        resolved = settings["ckpt_path"]
        if resolved is not None and resolved != ckpt_path and resolved not in LIGHTNING_CKPT_NAMES:
            check_checkpoint(resolved)  # "last" resolved to interrupted.ckpt: a clear error before Lightning reads it


LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")
"""``--ckpt_path`` values Lightning resolves itself."""


def checkpoint_folders(trainer: Any) -> list[Path]:
    """The folders the trainer's ModelCheckpoint callbacks are configured to write into (those
    without a ``dirpath`` write into a new versioned folder of the logger: never a clash)."""
    return [Path(c.dirpath) for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.dirpath]


def newest_last_checkpoint(interrupted: Path, folders: Sequence[Path]) -> str | None:
    """``interrupted`` when it is newer than every ``last*.ckpt`` of ``folders``, else None (then
    Lightning's own ``last`` applies)."""
    if not interrupted.is_file():
        return None
    lasts = [p for folder in folders for p in folder.glob("last*.ckpt")]
    if all(p.stat().st_mtime <= interrupted.stat().st_mtime for p in lasts):
        return str(interrupted)
    return None


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
