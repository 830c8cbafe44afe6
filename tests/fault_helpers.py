"""Helpers the fault tests load by name (e.g. as a Lightning callback ``class_path`` on the
``nextgpt fit`` command line)."""

from __future__ import annotations

from lightning.pytorch import Callback


class InterruptAt(Callback):
    """Stops fitting as Ctrl-C does (a KeyboardInterrupt) when ``step`` optimizer steps are done."""

    def __init__(self, step: int = 3) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # type: ignore[no-untyped-def]
        if trainer.global_step == self.step:
            raise KeyboardInterrupt
