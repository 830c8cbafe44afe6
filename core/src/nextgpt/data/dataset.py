"""A map-style dataset over one or more data files, and the batch a DataLoader makes of it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nextgpt.data.records import BadRecord, DatasetSource, OnBadRecord, SampleRecord, read_records
from nextgpt.errors import MediaError
from nextgpt.interfaces import ModalitySpec
from nextgpt.templates import Turn


@dataclass
class Sample:
    """A sample with its input media (in order of their placeholders)."""

    turns: list[Turn]
    media: list[tuple[str, Any]] = field(default_factory=list)
    """``(modality, item)`` for each input, in order of appearance; ``item`` is None when the
    dataset was told not to load media (a cache holds their features; see ``media_paths``)."""
    targets: dict[str, str] = field(default_factory=dict)
    """Modality -> caption of its first output (the alignment target)."""
    source: str = ""
    media_paths: list[Path] = field(default_factory=list)
    media_keys: list[str | None] = field(default_factory=list)
    """Content keys of the media files (digest of their bytes), when asked for."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """Modality -> its first output's media, loaded (only with ``load_outputs``)."""


@dataclass
class UnreadableSample:
    """What the dataset returns for a record whose media cannot be read at load time, under
    ``on_bad_record="skip"``: the batch leaves it out and the data module reports it."""

    bad: BadRecord


@dataclass
class SampleBatch:
    """A batch of samples of any mix of modalities (the DataLoader's output)."""

    samples: list[Sample]
    skipped: list[BadRecord] = field(default_factory=list)
    """Records of this batch left out because their media could not be read."""
    on_bad_record: OnBadRecord = "error"
    """What the training step does with media it cannot read itself (a feature-cache miss):
    the data module sets its own policy; ``error`` by default."""

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def captions(self) -> list[dict[str, str]]:
        """Per sample: modality -> caption of its first output."""
        return [s.targets for s in self.samples]

    def media_by_modality(self) -> dict[str, list[tuple[int, int, Any]]]:
        """Modality -> ``(sample index, position among the sample's inputs, item)``."""
        out: dict[str, list[tuple[int, int, Any]]] = {}
        for i, sample in enumerate(self.samples):
            for j, (modality, item) in enumerate(sample.media):
                out.setdefault(modality, []).append((i, j, item))
        return out


def collate_samples(samples: Sequence[Sample | UnreadableSample]) -> SampleBatch:
    """The DataLoader collate: keeps samples of every modality together (mixed batches), and
    records left out as unreadable in ``skipped``. The tokenising, media encoding and padding
    happen in the training step (`pad_packed`), where the model is."""
    return SampleBatch(
        [s for s in samples if isinstance(s, Sample)], [s.bad for s in samples if isinstance(s, UnreadableSample)]
    )


def bad_record(source: str, reason: str) -> BadRecord:
    """A `BadRecord` for the record at ``source`` (``file:index``)."""
    file, _, index = source.rpartition(":")
    return BadRecord(file=file or source, index=int(index) if index.isdigit() else -1, reason=reason)


class NextGPTDataset(Dataset):
    """All valid records of ``sources``; media are loaded on access.

    Args:
        sources: the data files.
        specs: the enabled modalities (use the model's, whose signal-token counts apply).
        on_bad_record: ``"skip"`` (warn, count, keep going) or ``"error"``.
        load_media: read the media files (else items are None and only paths and content keys
            travel: the training step reads a file only when the feature cache misses it).
        content_keys: give each media file its content key (`nextgpt.training.cache.file_key`).
        load_outputs: load the output media too (targets of the diffusion loss).
    """

    def __init__(
        self,
        sources: Sequence[DatasetSource],
        specs: Mapping[str, ModalitySpec],
        on_bad_record: OnBadRecord = "skip",
        load_media: bool = True,
        content_keys: bool = False,
        load_outputs: bool = False,
    ) -> None:
        self.specs = dict(specs)
        self.on_bad_record = on_bad_record
        self.load_media, self.content_keys, self.load_outputs = load_media, content_keys, load_outputs
        self.records: list[SampleRecord] = []
        self.bad_records: list[BadRecord] = []
        for source in sources:
            records, bad = read_records(source, self.specs, on_bad_record)
            self.records.extend(records)
            self.bad_records.extend(bad)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample | UnreadableSample:
        """The record's sample with its media loaded. A file that cannot be read raises a
        `MediaError` naming it and the record, or with ``on_bad_record="skip"`` gives an
        `UnreadableSample` (the batch leaves it out; the data module reports it)."""
        record = self.records[index]
        try:
            return self._load(record)
        except MediaError as exc:
            if self.on_bad_record == "error":
                raise
            return UnreadableSample(bad_record(record.source, str(exc).removesuffix(f" (record {record.source})")))

    def _load(self, record: SampleRecord) -> Sample:
        media, keys = [], []
        for ref in record.inputs:
            try:
                item = self.specs[ref.modality].load(ref.path) if self.load_media else None
                if self.content_keys:
                    from nextgpt.training.cache import file_key

                    keys.append(file_key(ref.path))
                else:
                    keys.append(None)
            except MediaError as exc:
                raise MediaError(ref.path, f"{exc.reason} (record {record.source})") from exc
            except OSError as exc:
                raise MediaError(ref.path, f"cannot read: {exc} (record {record.source})") from exc
            media.append((ref.modality, item))
        outputs = {}
        if self.load_outputs:
            for modality, ref in record.outputs.items():
                try:
                    outputs[modality] = self.specs[modality].load(ref.path)
                except MediaError as exc:
                    raise MediaError(ref.path, f"{exc.reason} (record {record.source})") from exc
                except OSError as exc:
                    raise MediaError(ref.path, f"cannot read: {exc} (record {record.source})") from exc
        return Sample(
            turns=list(record.turns),
            media=media,
            targets=dict(record.targets),
            source=record.source,
            media_paths=[ref.path for ref in record.inputs],
            media_keys=keys,
            outputs=outputs,
        )


class EpochSeededSampler(Sampler[int]):
    """A random order fixed by ``seed`` and the epoch (Lightning calls ``set_epoch``), so a run
    resumed from a checkpoint sees the same order as the uninterrupted one."""

    def __init__(self, length: int, seed: int = 13, shuffle: bool = True) -> None:
        self.length, self.seed, self.shuffle, self.epoch = length, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.length))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())


class _SkipBatches:
    """A batch sampler without its first ``skip`` batches (indices only: nothing is read)."""

    def __init__(self, batches: Any, skip: int) -> None:
        self.batches, self.skip = batches, skip

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.batches), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.skip)


class ResumableDataLoader(DataLoader):
    """A DataLoader Lightning can resume mid-epoch: its ``state_dict`` (saved in checkpoints by
    Lightning's fit loop) holds the epoch and how many batches of it were consumed;
    ``load_state_dict`` makes the next iteration skip those batches at the batch-sampler level
    (no media are read), which also holds when Lightning has wrapped the sampler for DDP.

    The data module calls `mark_consumed` for every batch the training step receives (after
    Lightning's prefetching, so the count is what was trained on)."""

    consumed = 0
    _skip = 0
    _skipping = False

    def _base_sampler(self) -> EpochSeededSampler | None:
        sampler: Any = self.sampler
        for _ in range(3):  # Lightning's DistributedSamplerWrapper keeps ours inside
            if isinstance(sampler, EpochSeededSampler):
                return sampler
            sampler = getattr(getattr(sampler, "dataset", None), "_sampler", None)
        return None

    @property
    def _index_sampler(self) -> Any:
        base = super()._index_sampler
        return _SkipBatches(base, self._skip) if self._skipping and self._skip else base

    def __iter__(self) -> Any:
        self._skipping = True
        try:
            iterator = super().__iter__()
        finally:
            self._skipping = False
        self.consumed, self._skip = self._skip, 0
        return iterator

    def mark_consumed(self) -> None:
        self.consumed += 1

    def set_epoch(self, epoch: int) -> None:
        """Set our sampler's epoch even when Lightning has wrapped it for DDP (its wrapper does
        not pass ``set_epoch`` on)."""
        sampler = self._base_sampler()
        if sampler is not None:
            sampler.set_epoch(epoch)

    def state_dict(self) -> dict[str, int]:
        sampler = self._base_sampler()
        return {"epoch": sampler.epoch if sampler is not None else 0, "batches": int(self.consumed)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if batches >= len(self):  # saved at the end of an epoch: the next one starts afresh
            epoch, batches = epoch + 1, 0
        self.set_epoch(epoch)
        self._skip = batches
