"""A feature cache for frozen encoders: each distinct media item is encoded once.

The toy world's stages revisit the same few hundred items for thousands of steps; the encoder
is frozen and deterministic, so its features can be kept instead of recomputed (exactly what
`nextgpt cache` does on disk for real data sets, here in memory).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn


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


class CachingEncoder(nn.Module):
    """Wraps a frozen `Encoder` so each distinct media item is preprocessed and encoded once.

    ``preprocess(item)`` returns the item's *features* (``[n, dim]``, from the cache or computed
    by the wrapped encoder) and ``forward`` passes them through, so `NextGPTModel.encode_media`
    and the training step use it unchanged. Exact: the encoder is frozen and deterministic."""

    def __init__(self, inner: nn.Module, cache: dict[tuple[str, str], torch.Tensor]) -> None:
        super().__init__()
        self.inner = inner
        self.cache = cache
        self.dim = inner.dim
        self.identity = inner.identity
        self.licence = inner.licence

    def preprocess(self, media: Any) -> torch.Tensor:
        key = (self.identity, media_key(media))
        if key not in self.cache:
            with torch.no_grad():
                self.cache[key] = self.inner(self.inner.preprocess(media)[None])[0].detach().cpu()
        return self.cache[key]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch


def cache_encoders(model: Any, cache: dict[tuple[str, str], torch.Tensor]) -> None:
    for name, encoder in list(model.encoders.items()):
        if not isinstance(encoder, CachingEncoder):
            model.encoders[name] = CachingEncoder(encoder, cache)
