"""A feature cache for frozen encoders: each distinct media item is encoded once.

The toy world's stages revisit the same few hundred items for thousands of steps; the encoder
is frozen and deterministic, so its features can be kept instead of recomputed (exactly what
`nextgpt cache` does on disk for real data sets, here in memory). `MemoryFeatures` is a
`nextgpt.encoding.FeatureSource`: set as the model's ``feature_source``, the model's one encoding
path (`NextGPTModel.encode_media`, used by generation, the training step and the metrics)
consults it before running an encoder.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from nextgpt.encoding import FeatureSource


def media_key(item: Any) -> str:
    """A content hash of a loaded media item (PIL image, or an object holding numpy arrays)."""
    digest = hashlib.blake2b(digest_size=16)
    if hasattr(item, "tobytes") and hasattr(item, "size") and hasattr(item, "mode"):  # PIL
        digest.update(f"{item.mode}{item.size}".encode())
        digest.update(item.tobytes())
    else:
        for name, value in sorted(vars(item).items()):
            digest.update(name.encode())
            digest.update(value.tobytes() if isinstance(value, np.ndarray) else repr(value).encode())
    return digest.hexdigest()


class MemoryFeatures(FeatureSource):
    """Features of loaded media items kept in ``cache``, keyed by ``(encoder identity, content
    hash)``, so models built from the same frozen encoder (one per stage) share it. Exact: the
    encoder is frozen and deterministic, and the features are kept as computed (float32).

    Args:
        identities: modality -> the identity of the model's encoder for it.
        cache: the dictionary the features are kept in.
    """

    def __init__(self, identities: dict[str, str], cache: dict[tuple[str, str], torch.Tensor]) -> None:
        self.identities = identities
        self.cache = cache

    def get(self, modality: str, item: Any, key: str | None) -> torch.Tensor | None:
        return self.cache.get((self.identities[modality], media_key(item)))

    def put(self, modality: str, item: Any, key: str | None, features: torch.Tensor) -> torch.Tensor:
        value = features.detach().cpu()
        self.cache[(self.identities[modality], media_key(item))] = value
        return value


def cache_encoders(model: Any, cache: dict[tuple[str, str], torch.Tensor]) -> None:
    """Give ``model`` a `MemoryFeatures` source over ``cache`` for every one of its encoders."""
    identities = {name: str(encoder.identity) for name, encoder in model.encoders.items()}
    model.feature_source = MemoryFeatures(identities, cache)
