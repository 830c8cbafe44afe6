"""On-disk caches of what the frozen parts compute: encoder features of media files and decoder
embeddings of captions (the alignment targets).

Each cache lives in ``<root>/<kind>/<modality>/<digest of its identity>/`` as safetensors
shards; a tensor's name is the digest of its content (the media file's bytes, or the caption's
text). A caption's condition is stored part by part (`ConditionCache`): ``<digest>/<part>`` and,
for a part with an attention mask, ``<digest>/<part>/mask``. The identity names the frozen
component exactly (the encoder's or decoder's ``identity``, its backend, its settings and, for a
decoder, its condition spec), and every shard records it in its metadata: a different encoder or
decoder uses another folder and never reads a stale entry. Shards are written whole, under a
temporary name then renamed, one writer per process, so DDP ranks and restarts can share a
cache. Features are stored in float16 by default (as the released code cached its targets).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nextgpt.conditions import Condition, ConditionSpec
from nextgpt.errors import MediaError, SkippedRecordWarning
from nextgpt.paths import apply_default_mode

IDENTITY_KEY = "nextgpt_cache_identity"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_key(path: str | Path) -> str:
    """The content key of a media file: the digest of its bytes (renaming it keeps the entry)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def text_key(text: str) -> str:
    return digest(text.encode("utf-8"))


def component_identity(kind: str, modality: str, identity: str, settings: Any) -> str:
    """A stable string naming a frozen component and everything that changes its output."""
    return json.dumps(
        {"kind": kind, "modality": modality, "identity": identity, "settings": settings}, sort_keys=True, default=str
    )


class TensorCache:
    """Content-keyed tensors of one frozen component, in safetensors shards.

    Args:
        root: the cache root folder.
        kind: ``features`` or ``targets``.
        modality: the modality the component serves.
        identity: `component_identity` of the component.
        shard_size: entries buffered before a shard is written (`flush` writes the rest).
        dtype: storage dtype (``None`` keeps the computed one).
    """

    def __init__(
        self,
        root: str | Path,
        kind: str,
        modality: str,
        identity: str,
        shard_size: int = 256,
        dtype: torch.dtype | None = torch.float16,
        memory_items: int = 4096,
    ) -> None:
        self.identity = identity
        self.directory = Path(root) / kind / modality / digest(identity.encode())[:20]
        self.shard_size, self.dtype, self.memory_items = shard_size, dtype, memory_items
        self._index: dict[str, Path] = {}
        self._pending: dict[str, torch.Tensor] = {}
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._written = 0
        self.hits = self.misses = 0
        self.refresh()

    def refresh(self) -> None:
        """Re-read the shard index (other processes may have written shards)."""
        if not self.directory.is_dir():
            return
        for shard in sorted(self.directory.glob("*.safetensors")):
            if shard in self._index.values():
                continue
            try:
                with safe_open(str(shard), framework="pt") as fh:
                    meta = fh.metadata() or {}
                    keys = list(fh.keys())
            except Exception as exc:  # a truncated or foreign file: say so, do not use it
                warnings.warn(f"cache shard {shard} is unreadable and ignored: {exc}", stacklevel=2)
                continue
            if meta.get(IDENTITY_KEY) != self.identity:
                warnings.warn(f"cache shard {shard} belongs to another component and is ignored", stacklevel=2)
                continue
            for key in keys:
                self._index.setdefault(key, shard)

    def __contains__(self, key: str) -> bool:
        return key in self._pending or key in self._index

    def __len__(self) -> int:
        return len(set(self._index) | set(self._pending))

    def get(self, key: str) -> torch.Tensor | None:
        """The stored tensor (on the CPU, in the storage dtype) or None."""
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += 1
            return self._memory[key]
        value = self._pending.get(key)
        if value is None and key in self._index:
            shard = self._index[key]
            try:
                with safe_open(str(shard), framework="pt") as fh:
                    value = fh.get_tensor(key)
            except Exception as exc:  # damaged or removed since it was indexed: a miss, said once
                warnings.warn(f"cache shard {shard} is unreadable and ignored: {exc}", stacklevel=2)
                self._index = {k: v for k, v in self._index.items() if v != shard}
                value = None
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._remember(key, value)
        return value

    def put(self, key: str, value: torch.Tensor) -> None:
        if key in self:
            return
        value = value.detach().to("cpu", self.dtype or value.dtype).contiguous()
        self._pending[key] = value
        self._remember(key, value)
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered entries as one shard."""
        if not self._pending:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"shard-{int(time.time() * 1000)}-{os.getpid()}-{self._written:05d}.safetensors"
        target = self.directory / name
        tmp = target.with_suffix(".tmp")
        save_file(dict(self._pending), str(tmp), metadata={IDENTITY_KEY: self.identity})
        apply_default_mode(tmp)  # safetensors writes 0600
        os.replace(tmp, target)
        for key in self._pending:
            self._index[key] = target
        self._pending.clear()
        self._written += 1

    def _remember(self, key: str, value: torch.Tensor) -> None:
        self._memory[key] = value
        if len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)


class ConditionCache:
    """Decoder conditions of captions (the alignment targets) in a `TensorCache`, one tensor per
    condition part and mask, keyed by the caption's digest (`text_key`)."""

    def __init__(self, tensors: TensorCache, spec: ConditionSpec) -> None:
        self.tensors, self.spec = tensors, spec

    def _keys(self, caption: str) -> list[tuple[str, str, bool]]:
        """(tensor name, part name, is mask) of every tensor of one caption."""
        base = text_key(caption)
        keys = [(f"{base}/{part.name}", part.name, False) for part in self.spec.parts]
        keys += [(f"{base}/{part.name}/mask", part.name, True) for part in self.spec.parts if part.mask]
        return keys

    def __contains__(self, caption: str) -> bool:
        return all(key in self.tensors for key, _, _ in self._keys(caption))

    def get(self, caption: str) -> Condition | None:
        """The stored one-row condition of ``caption`` (on the CPU, in the storage dtype) or None."""
        tensors: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        for key, part, is_mask in self._keys(caption):
            value = self.tensors.get(key)
            if value is None:
                return None
            if is_mask:
                masks[part] = value.to(torch.long)[None]
            else:
                tensors[part] = value[None]
        return Condition(self.spec, tensors, masks)

    def put(self, caption: str, condition: Condition) -> None:
        """Store the one-row ``condition`` of ``caption``."""
        for key, part, is_mask in self._keys(caption):
            value = condition.mask(part) if is_mask else condition[part]
            self.tensors.put(key, value[0])  # type: ignore[index]

    @property
    def dtype(self) -> torch.dtype | None:
        return self.tensors.dtype

    def flush(self) -> None:
        self.tensors.flush()

    def refresh(self) -> None:
        self.tensors.refresh()


class ModelCaches:
    """The feature cache of every modality's encoder and the target cache of every decoder of a
    `NextGPTModel`."""

    def __init__(self, model: Any, root: str | Path, shard_size: int = 256) -> None:
        self.features: dict[str, TensorCache] = {}
        self.targets: dict[str, ConditionCache] = {}
        for name, cfg in model.modality_configs.items():
            encoder = model.encoders[name]
            self.features[name] = TensorCache(
                root,
                "features",
                name,
                component_identity("encoder", name, encoder.identity, cfg.encoder.model_dump(mode="json")),
                shard_size,
            )
            if name in model.decoders:
                decoder = model.decoders[name]
                spec = decoder.condition_spec
                settings = {**cfg.decoder.model_dump(mode="json"), "condition": spec.model_dump(mode="json")}
                self.targets[name] = ConditionCache(
                    TensorCache(
                        root,
                        "targets",
                        name,
                        component_identity("decoder", name, decoder.identity, settings),
                        shard_size,
                    ),
                    spec,
                )

    def all(self) -> Iterable[TensorCache | ConditionCache]:
        return [*self.features.values(), *self.targets.values()]

    def flush(self) -> None:
        for cache in self.all():
            cache.flush()

    def refresh(self) -> None:
        for cache in self.all():
            cache.refresh()


def fill_caches(module: Any, datasets: Iterable[Any], batch_size: int = 16) -> dict[str, int]:
    """Compute every missing feature and caption embedding of ``datasets`` (`NextGPTDataset`s)
    into ``module.caches`` (a `NextGPTLightningModule` with ``cache_dir``). Returns counts of
    ``computed``, ``cached`` (already there) and ``skipped`` entries (media files that cannot be
    read, each named in a warning; training applies its ``on_bad_record`` when it meets them)."""
    if module.caches is None:
        raise ValueError("fill_caches: the module has no cache_dir")
    counts = {"computed": 0, "cached": 0, "skipped": 0}
    pending: dict[str, list[tuple[Any, str]]] = {}
    captions: dict[str, list[str]] = {}

    def run_features(modality: str) -> None:
        items, keys = [], []
        for path, key in pending.pop(modality, []):
            try:
                items.append(module.model.specs[modality].load(path))
            except (MediaError, OSError) as exc:  # training meets the file again and applies on_bad_record
                counts["skipped"] += 1
                warnings.warn(f"cache: skipped {exc}", SkippedRecordWarning, stacklevel=2)
                continue
            keys.append(key)
        if items:
            module.model.media_features(modality, items, keys)  # the cache is the model's feature source
            counts["computed"] += len(items)

    def run_targets(modality: str) -> None:
        batch = captions.pop(modality, [])
        if batch:
            module.caption_targets(modality, batch)
            counts["computed"] += len(batch)

    for dataset in datasets:
        for record in dataset.records:
            for ref in record.inputs:
                cache = module.caches.features.get(ref.modality)
                if cache is None:
                    continue
                try:
                    key = file_key(ref.path)
                except OSError as exc:
                    counts["skipped"] += 1
                    warnings.warn(
                        f"cache: skipped {ref.path}: {exc.strerror or exc}", SkippedRecordWarning, stacklevel=2
                    )
                    continue
                if key in cache or any(k == key for _, k in pending.get(ref.modality, [])):
                    counts["cached"] += 1
                    continue
                pending.setdefault(ref.modality, []).append((ref.path, key))
                if len(pending[ref.modality]) >= batch_size:
                    run_features(ref.modality)
            for modality, caption in record.targets.items():
                cache = module.caches.targets.get(modality)
                if cache is None:
                    continue
                if caption in cache or caption in captions.get(modality, []):
                    counts["cached"] += 1
                    continue
                captions.setdefault(modality, []).append(caption)
                if len(captions[modality]) >= batch_size:
                    run_targets(modality)
    for modality in list(pending):
        run_features(modality)
    for modality in list(captions):
        run_targets(modality)
    module.caches.flush()
    return counts
