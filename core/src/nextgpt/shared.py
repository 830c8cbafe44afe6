"""A cache of heavy frozen models shared between modalities (one ImageBind for all of them)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any


class SharedModels:
    """Keeps one instance per key; ``get(key, factory)`` builds it on first use."""

    def __init__(self) -> None:
        self._models: dict[Hashable, Any] = {}

    def get(self, key: Hashable, factory: Callable[[], Any]) -> Any:
        if key not in self._models:
            self._models[key] = factory()
        return self._models[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._models

    def __len__(self) -> int:
        return len(self._models)
