"""Keeping the work of a training run that stops early.

`InterruptCheckpoint` is a Lightning callback that, when fitting stops on Ctrl-C or an
exception, saves a checkpoint at the step reached (``interrupted.ckpt``), so resuming loses
nothing since the last periodic checkpoint. It saves only what is consistent: not when the
weights are NaN or infinite, not in the middle of an optimizer step, not before the first step,
and not in a multi-process run (the other processes may not stop at the same step). The data
loader's position is set back to the batches whose step completed, so the batch that was
interrupted is trained again on resume.

`nextgpt fit` adds it on its own; add it to a `Trainer` of your own with
``callbacks=[InterruptCheckpoint(dirpath)]``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback

from nextgpt.data.dataset import ResumableDataLoader
from nextgpt.errors import NextGPTWarning

FILENAME = "interrupted.ckpt"


class InterruptCheckpoint(Callback):
    """Save ``dirpath/interrupted.ckpt`` when fitting stops early (see the module docstring).

    Args:
        dirpath: the folder of the checkpoint (default: the first ModelCheckpoint's folder, else
            ``<default_root_dir>/checkpoints``).
    """

    def __init__(self, dirpath: str | Path | None = None) -> None:
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.saved: Path | None = None

    def checkpoint_path(self, trainer: Any) -> Path:
        if self.dirpath is not None:
            return self.dirpath / FILENAME
        callback = getattr(trainer, "checkpoint_callback", None)
        if callback is not None and getattr(callback, "dirpath", None):
            return Path(callback.dirpath) / FILENAME
        return Path(trainer.default_root_dir) / "checkpoints" / FILENAME

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if trainer.state.fn != "fit" or trainer.global_step == 0:
            return
        reason = self._unsafe(trainer, pl_module)
        if reason:
            self._say(
                f"training stopped after {trainer.global_step} steps ({_what(exception)}); no checkpoint: {reason}"
            )
            return
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableDataLoader):  # resume after the last batch whose step completed
            loader.consumed = int(trainer.fit_loop.epoch_loop.batch_progress.current.completed)
        path = self.checkpoint_path(trainer)
        try:
            trainer.save_checkpoint(path, weights_only=False)  # the whole training state
        except Exception as exc:  # the original exception is what the user must see; say this too
            self._say(f"training stopped after {trainer.global_step} steps; could not save {path}: {exc}")
            return
        self.saved = path
        self._say(
            f"training stopped after {trainer.global_step} steps ({_what(exception)}): saved {path}; "
            f"resume with --ckpt_path {path} (or --ckpt_path last)"
        )

    @staticmethod
    def _unsafe(trainer: Any, pl_module: Any) -> str | None:
        if trainer.world_size > 1:
            return "a multi-process run is resumed from its last periodic checkpoint"
        if getattr(pl_module, "in_optimizer_step", False):
            return "it stopped inside an optimizer step (the weights are half updated)"
        check = getattr(pl_module, "non_finite_parameters", None)
        bad = check() if callable(check) else []
        if bad:
            return f"trained weights are NaN or infinite ({', '.join(bad[:3])})"
        return None

    @staticmethod
    def _say(message: str) -> None:
        warnings.warn(message, NextGPTWarning, stacklevel=2)
        sys.stderr.flush()


def _what(exception: BaseException) -> str:
    return "Ctrl-C" if isinstance(exception, KeyboardInterrupt) else type(exception).__name__
