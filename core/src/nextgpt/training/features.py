"""Media features for training: the on-disk feature cache as the model's feature source.

Training encodes media through the model's one encoding path (`NextGPTModel.encode_media`,
`nextgpt.encoding`). With ``cache_dir``, `CachedFeatures` is set as the model's
``feature_source``: a cached item is neither read, preprocessed nor encoded, and a computed one
is stored. The data set then hands over media files unread (``load_media=False``) with their
content keys; `read_missing_media` reads, before a step, the files whose features the cache
lacks, and applies the data's ``on_bad_record`` to those that cannot be read.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nextgpt.data.dataset import SampleBatch
from nextgpt.encoding import FeatureSource
from nextgpt.errors import MediaError, SkippedRecordWarning
from nextgpt.training.cache import TensorCache


class CachedFeatures(FeatureSource):
    """Each modality's `TensorCache` of encoder features as a `FeatureSource`, keyed by the media
    file's content (`nextgpt.training.cache.file_key`). Every value goes through the cache's
    storage dtype, so a hit and a miss give the same numbers.

    Args:
        caches: modality -> its feature cache.
        write: store what the encoders compute (off: read only).
    """

    def __init__(self, caches: Mapping[str, TensorCache], write: bool = True) -> None:
        self.caches = caches
        self.write = write

    def holds(self, modality: str, key: str | None) -> bool:
        """Whether the features of the item with content key ``key`` are stored."""
        cache = self.caches.get(modality)
        return cache is not None and key is not None and key in cache

    def get(self, modality: str, item: Any, key: str | None) -> torch.Tensor | None:
        cache = self.caches.get(modality)
        return cache.get(key) if cache is not None and key is not None else None

    def put(self, modality: str, item: Any, key: str | None, features: torch.Tensor) -> torch.Tensor:
        cache = self.caches.get(modality)
        if cache is None:
            return features
        stored = features.detach().to("cpu", cache.dtype or features.dtype)
        if key is not None and self.write:
            cache.put(key, stored)
        return stored


def read_media(model: Any, modality: str, path: Path, source: str) -> Any:
    """Load one media file with its modality's loader; errors are `MediaError`s naming the file
    and its record (``source``)."""
    try:
        return model.specs[modality].load(path)
    except MediaError as exc:
        raise MediaError(path, f"{exc.reason} (record {source})") from exc
    except OSError as exc:
        raise MediaError(path, f"cannot read: {exc.strerror or exc} (record {source})") from exc


def read_missing_media(model: Any, batch: SampleBatch, features: CachedFeatures, skipped: list[str]) -> None:
    """Read the batch's unread media files whose features ``features`` lacks. A file that cannot
    be read raises a `MediaError` naming it and its record, or with ``batch.on_bad_record ==
    "skip"`` leaves its sample out of the batch with a warning (its record appended to
    ``skipped``)."""
    kept = []
    for sample in batch.samples:
        try:
            for j, (modality, item) in enumerate(sample.media):
                key = sample.media_keys[j] if sample.media_keys else None
                if item is None and modality in features.caches and not features.holds(modality, key):
                    sample.media[j] = (modality, read_media(model, modality, sample.media_paths[j], sample.source))
        except MediaError as exc:
            if batch.on_bad_record != "skip":
                raise
            skipped.append(sample.source)
            warnings.warn(
                f"skipped {sample.source}: {exc} (on_bad_record: skip; {len(skipped)} skipped by the "
                "training step so far)",
                SkippedRecordWarning,
                stacklevel=3,
            )
            continue
        kept.append(sample)
    batch.samples = kept


def batch_media(
    model: Any, batch: SampleBatch, modality: str, entries: list[tuple[int, int, Any]]
) -> tuple[list[Any], list[str | None]]:
    """The items and content keys of ``entries`` (``(sample, position, item)`` of one modality),
    with every unread item that the model's feature source does not hold read now."""
    source = model.feature_source
    items, keys = [], []
    for i, j, item in entries:
        sample = batch.samples[i]
        key = sample.media_keys[j] if sample.media_keys else None
        held = isinstance(source, CachedFeatures) and source.holds(modality, key)
        if item is None and not held:
            item = read_media(model, modality, sample.media_paths[j], sample.source)
        items.append(item)
        keys.append(key)
    return items, keys
