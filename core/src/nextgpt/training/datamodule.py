"""`NextGPTDataModule`: the data files of a stage as train (and optional validation) loaders."""

from __future__ import annotations

import warnings
from typing import Any, Literal

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from nextgpt.config import validate_model
from nextgpt.data.dataset import (
    EpochSeededSampler,
    NextGPTDataset,
    ResumableDataLoader,
    SampleBatch,
    collate_samples,
)
from nextgpt.data.records import BadRecord, DatasetSource
from nextgpt.errors import ConfigError, SkippedRecordWarning


class NextGPTDataModule(LightningDataModule):
    """Mixed-modality batches over any number of data files.

    Args:
        train: the training files, each ``{path, format: pairs|instruction|mosit, root, task,
            prompt, check_files, limit}`` (see `nextgpt.data.DatasetSource`).
        val: validation files, same form (optional).
        batch_size: samples per step and device.
        num_workers: DataLoader workers (media are read in them).
        on_bad_record: ``skip`` (warn with file, index and a count) or ``error``. Applies to
            problems found when the files are read (a bad record) and to media that fail to
            decode when a batch is made (a truncated video, an empty sound): a skipped sample
            is reported with its file and index and the run goes on.
        shuffle, seed: the order of each epoch is fixed by ``seed`` and the epoch number, so a
            resumed run sees what the uninterrupted one saw.
        plugins: plugin names to load (default: ``NEXTGPT_PLUGINS`` or every installed one).
        cache_media: give media their content keys and do not read them in the loader: the
            training step reads a file only when the model's feature cache misses it (set from
            ``model.cache_dir`` by the CLI).
        load_outputs: load each sample's output media, the diffusion loss's targets (set from
            ``model.diffusion_loss_weight`` by the CLI).
        recipe: the training recipe (`nextgpt.training.recipes`; set from ``model.recipe`` by
            the CLI): ``legacy`` gives sources without a ``prompt`` the released one.
    """

    def __init__(
        self,
        train: list[dict[str, Any]],
        val: list[dict[str, Any]] | None = None,
        batch_size: int = 2,
        num_workers: int = 0,
        on_bad_record: Literal["skip", "error"] = "skip",
        shuffle: bool = True,
        seed: int = 13,
        plugins: list[str] | None = None,
        cache_media: bool = False,
        load_outputs: bool = False,
        recipe: str = "default",
    ) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ConfigError(f"data.batch_size: expected a positive number of samples, got {batch_size!r}")
        if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 0:
            raise ConfigError(f"data.num_workers: expected 0 or more, got {num_workers!r}")
        if on_bad_record not in ("skip", "error"):
            raise ConfigError(f"data.on_bad_record: expected 'skip' or 'error', got {on_bad_record!r}")
        self.save_hyperparameters()
        self.skipped: list[BadRecord] = []
        """Samples left out of batches because their media could not be decoded."""
        from nextgpt.training.recipes import RECIPES

        if recipe not in RECIPES:
            raise ConfigError(f"data.recipe: unknown recipe {recipe!r} (recipes: {', '.join(RECIPES)})")
        prompt = RECIPES[recipe].caption_prompt
        train, val = ([_with_prompt(s, prompt) for s in group or []] for group in (train, val))
        self.train_sources = [validate_model(DatasetSource, s, f"data.train[{i}]") for i, s in enumerate(train)]
        self.val_sources = [validate_model(DatasetSource, s, f"data.val[{i}]") for i, s in enumerate(val)]
        if not self.train_sources:
            raise ConfigError("data.train: at least one data file is needed")
        self.train_set: NextGPTDataset | None = None
        self.val_set: NextGPTDataset | None = None

    def specs(self) -> dict[str, Any]:
        """The model's modalities: its specs once built, else the installed plugins' specs of
        the modalities the model will enable (records of any other modality are bad records)."""
        trainer = self.trainer
        module = getattr(trainer, "lightning_module", None) if trainer is not None else None
        model = getattr(module, "model", None)
        if model is not None:
            return dict(model.specs)
        from nextgpt.plugins import default_registry, load_plugins

        registry = load_plugins(allow=self.hparams.plugins) if self.hparams.plugins else default_registry()
        names = sorted(registry.modalities)
        enabled = module.enabled_modalities() if hasattr(module, "enabled_modalities") else None
        if enabled is not None:
            names = [n for n in names if n in enabled]
        return {name: registry.modality(name) for name in names}

    def setup(self, stage: str | None = None) -> None:
        specs = self.specs()
        if self.train_set is None:
            self.train_set = NextGPTDataset(
                self.train_sources, specs, self.hparams.on_bad_record, **self._media_options()
            )
            if len(self.train_set) == 0:
                raise ConfigError("data.train: no valid record in " + ", ".join(s.path for s in self.train_sources))
        if self.val_set is None and self.val_sources:
            self.val_set = NextGPTDataset(self.val_sources, specs, self.hparams.on_bad_record, **self._media_options())

    def _media_options(self) -> dict[str, bool]:
        cached = bool(self.hparams.cache_media)
        return {"load_media": not cached, "content_keys": cached, "load_outputs": bool(self.hparams.load_outputs)}

    def _loader(self, dataset: NextGPTDataset, shuffle: bool) -> DataLoader:
        hp = self.hparams
        return ResumableDataLoader(
            dataset,
            batch_size=hp.batch_size,
            sampler=EpochSeededSampler(len(dataset), hp.seed, shuffle),
            num_workers=hp.num_workers,
            collate_fn=collate_samples,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        self._train_loader = self._loader(self.train_set, self.hparams.shuffle)
        return self._train_loader

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if isinstance(batch, SampleBatch):
            batch.on_bad_record = self.hparams.on_bad_record
            self.report_skipped(batch.skipped)
            # counts the batches the training step receives, for mid-epoch resumption
            if trainer is not None and trainer.training:
                loader = trainer.train_dataloader
                if isinstance(loader, ResumableDataLoader):
                    loader.mark_consumed()
        return batch

    def report_skipped(self, bad: list[BadRecord]) -> None:
        """Warn about each sample left out of a batch (file, index, reason) with the running count."""
        for record in bad:
            self.skipped.append(record)
            warnings.warn(
                f"skipped {record} (on_bad_record: skip; {len(self.skipped)} skipped so far)",
                SkippedRecordWarning,
                stacklevel=2,
            )

    def val_dataloader(self) -> Any:
        return self._loader(self.val_set, False) if self.val_set is not None else []


def _with_prompt(source: Any, prompt: str | None) -> Any:
    """``source`` with ``prompt`` when it is a mapping that sets none (a recipe's default)."""
    if prompt is None or not isinstance(source, dict) or "prompt" in source:
        return source
    return {**source, "prompt": prompt}
