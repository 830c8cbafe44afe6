"""Media in: the one way a media item becomes LLM input embeddings.

`NextGPTModel.encode_media` is used by generation, by the training step and by anything else
that reads media (the toy world's metrics): frozen-encoder features ``[B, n, d_enc]``
(`media_features`), then the modality's input projector ``-> [B, k, d_llm]``.

Features can come from somewhere other than the encoder: a `FeatureSource` set as
``model.feature_source`` is asked first for each item, and told what the encoder computed for
the items it lacked. Training's on-disk feature cache is one (`nextgpt.training.features`); an
in-memory cache of a fixed set of items is another (the toy world's). The encoder is frozen and
deterministic, so a source changes how fast features come, not what they are (up to its storage
dtype).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from nextgpt.errors import NextGPTError

if TYPE_CHECKING:
    from torch import nn


class FeatureSource(ABC):
    """Where frozen-encoder features can come from instead of the encoder.

    `NextGPTModel.media_features` calls `get` for every item; the items it returns None for are
    preprocessed and encoded together, and each result goes through `put`, whose return value is
    what the model uses (so a source that stores in float16 gives the same numbers on a hit and
    on a miss).
    """

    @abstractmethod
    def get(self, modality: str, item: Any, key: str | None) -> torch.Tensor | None:
        """The features ``[n, d_enc]`` of one item, or None to have the encoder compute them.

        Args:
            modality: the item's modality.
            item: the loaded media item; None when the caller did not read the file because it
                expected the source to hold its features (then ``key`` names it).
            key: the caller's content key of the item (training: the digest of the media file's
                bytes), or None.
        """

    def put(self, modality: str, item: Any, key: str | None, features: torch.Tensor) -> torch.Tensor:
        """Told the features ``[n, d_enc]`` the encoder computed for an item `get` lacked; returns
        the value to use. The default keeps nothing and returns ``features``."""
        return features


class MediaEncodingMixin:
    """The encoding path of `NextGPTModel` (mixed into it): frozen encoders, an optional
    `FeatureSource`, input projectors."""

    if TYPE_CHECKING:
        encoders: nn.ModuleDict
        input_projectors: nn.ModuleDict
        device: torch.device

    feature_source: FeatureSource | None = None
    """Asked for features before the encoder runs (None: always encode)."""

    def media_features(
        self, modality: str, items: Sequence[Any], keys: Sequence[str | None] | None = None
    ) -> torch.Tensor:
        """Frozen-encoder features ``[B, n, d_enc]`` of ``items`` (one modality), on the model's
        device: from the `feature_source` where it has them, else preprocessed and encoded in one
        batch (no gradients).

        Args:
            modality: the modality of every item.
            items: loaded media items; an item may be None where ``keys`` names features the
                source holds.
            keys: content keys for the feature source, one per item (default: None each).
        """
        keys = list(keys) if keys is not None else [None] * len(items)
        if len(keys) != len(items):
            raise ValueError(f"media_features: {len(items)} items but {len(keys)} keys")
        source = self.feature_source
        features: list[torch.Tensor | None] = [
            source.get(modality, item, key) if source is not None else None
            for item, key in zip(items, keys, strict=True)
        ]
        missing = [n for n, value in enumerate(features) if value is None]
        if missing:
            absent = [str(keys[n]) for n in missing if items[n] is None]
            if absent:
                raise NextGPTError(
                    f"{modality}: no media item and no stored features for {', '.join(absent[:3])} "
                    "(the feature source does not hold them: read the media files)"
                )
            encoder = self.encoders[modality]
            batch = torch.stack([encoder.preprocess(items[n]) for n in missing]).to(self.device)
            with torch.no_grad():
                computed = encoder(batch)
            for n, value in zip(missing, computed, strict=True):
                features[n] = source.put(modality, items[n], keys[n], value) if source is not None else value
        return torch.stack(features).to(self.device)  # type: ignore[arg-type]

    def encode_media(
        self, modality: str, items: Sequence[Any], keys: Sequence[str | None] | None = None
    ) -> torch.Tensor:
        """Encode media items of one modality to LLM embeddings ``[B, k, d_llm]``: `media_features`
        through the modality's input projector (with gradients, when the projector trains)."""
        features = self.media_features(modality, items, keys)
        projector = self.input_projectors[modality]
        return projector(features.to(next(projector.parameters()).dtype))
