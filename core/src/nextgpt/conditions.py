"""Decoder conditions: what a decoder is conditioned on (`ConditionSpec`) and a batch of it (`Condition`).

A diffusers pipeline takes its text condition as keyword arguments, and pipelines differ in
which: Stable Diffusion one sequence ``prompt_embeds [B, 77, 768]``; AudioLDM one vector
``prompt_embeds [B, 512]``; PixArt a sequence with its ``prompt_attention_mask [B, 300]``;
SDXL, SD3 and FLUX a sequence plus a pooled vector ``pooled_prompt_embeds [B, d]``. A decoder
declares those parts, in order, as a `ConditionSpec`. Output projectors are built from the spec
and return a `Condition` of it; the decoder hands each part to its pipeline by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KEYWORD = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""Part and mask names are pipeline keyword arguments, so Python identifiers."""


class ConditionPart(BaseModel):
    """One tensor a decoder is conditioned on.

    ``ConditionPart(name="prompt_embeds", shape=(77, 768))`` is a sequence of 77 vectors;
    ``ConditionPart(name="pooled_prompt_embeds", shape=(1280,))`` one pooled vector;
    ``mask="prompt_attention_mask"`` says the pipeline takes a ``[B, Q]`` attention mask for the
    sequence under that keyword.
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=KEYWORD)
    """The pipeline keyword the tensor is passed as, e.g. ``prompt_embeds``."""
    shape: tuple[int] | tuple[int, int]
    """``(Q, d)`` for a sequence of ``Q`` vectors, ``(d,)`` for one pooled vector."""
    mask: str | None = Field(default=None, pattern=KEYWORD)
    """The pipeline keyword of the sequence's attention mask, or None if it takes none."""

    @field_validator("shape")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(size <= 0 for size in value):
            raise ValueError(f"sizes must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _mask_needs_a_sequence(self) -> ConditionPart:
        if self.mask is not None and self.pooled:
            raise ValueError(f"part {self.name!r}: a pooled vector has no attention mask")
        return self

    @property
    def pooled(self) -> bool:
        """Whether the part is one vector rather than a sequence."""
        return len(self.shape) == 1

    @property
    def tokens(self) -> int:
        """``Q`` for a sequence, 1 for a pooled vector (how many queries a projector gives it)."""
        return 1 if self.pooled else self.shape[0]

    @property
    def width(self) -> int:
        """``d``: the width of each vector."""
        return self.shape[-1]

    def __str__(self) -> str:
        text = f"{self.name} [{', '.join(str(s) for s in self.shape)}]"
        return text + (f" masked by {self.mask}" if self.mask else "")


class ConditionSpec(BaseModel):
    """The ordered parts a decoder is conditioned on; names (and mask names) are unique."""

    model_config = ConfigDict(frozen=True)

    parts: tuple[ConditionPart, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_keywords(self) -> ConditionSpec:
        keywords = [p.name for p in self.parts] + [p.mask for p in self.parts if p.mask]
        repeated = sorted({k for k in keywords if keywords.count(k) > 1})
        if repeated:
            raise ValueError(f"keywords used twice: {repeated}")
        return self

    @classmethod
    def sequence(cls, length: int, width: int, name: str = "prompt_embeds", mask: str | None = None) -> ConditionSpec:
        """A spec of one sequence ``[length, width]`` (Stable Diffusion: ``sequence(77, 768)``)."""
        return cls(parts=(ConditionPart(name=name, shape=(length, width), mask=mask),))

    @classmethod
    def pooled_vector(cls, width: int, name: str = "prompt_embeds") -> ConditionSpec:
        """A spec of one vector ``[width]`` (AudioLDM: ``pooled_vector(512)``)."""
        return cls(parts=(ConditionPart(name=name, shape=(width,)),))

    @property
    def names(self) -> list[str]:
        return [part.name for part in self.parts]

    def __getitem__(self, name: str) -> ConditionPart:
        for part in self.parts:
            if part.name == name:
                return part
        raise KeyError(f"no condition part {name!r} (parts: {self.names})")

    def __str__(self) -> str:
        return " + ".join(str(part) for part in self.parts)

    def zeros(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Condition:
        """A condition of zeros (masks all ones) with ``batch`` rows."""
        tensors = {p.name: torch.zeros(batch, *p.shape, device=device, dtype=dtype) for p in self.parts}
        return Condition(self, tensors)


@dataclass(frozen=True, eq=False)
class Condition:
    """A batch of conditions of one `ConditionSpec`: a tensor ``[B, *part.shape]`` per part and a
    ``[B, Q]`` attention mask (int64, 1 = attend) per part that declares one.

    A masked part given no mask gets an all-ones mask (every position attends), which is what an
    output projector produces. Construction checks every name and shape against the spec.
    """

    spec: ConditionSpec
    tensors: Mapping[str, torch.Tensor]
    """Part name -> ``[B, Q, d]`` or ``[B, d]``."""
    masks: Mapping[str, torch.Tensor] = field(default_factory=dict)
    """Part name (not mask keyword) -> ``[B, Q]``, for the parts that declare a mask."""

    def __post_init__(self) -> None:
        if sorted(self.tensors) != sorted(self.spec.names):
            raise ValueError(f"condition: parts {sorted(self.tensors)} do not match the spec's {self.spec.names}")
        batch = next(iter(self.tensors.values())).shape[0]
        masks = dict(self.masks)
        for part in self.spec.parts:
            tensor = self.tensors[part.name]
            if tuple(tensor.shape) != (batch, *part.shape):
                raise ValueError(
                    f"condition: {part.name} must have shape [{', '.join(map(str, (batch, *part.shape)))}], "
                    f"got {list(tensor.shape)}"
                )
            if part.mask is None:
                if part.name in masks:
                    raise ValueError(f"condition: part {part.name!r} declares no mask but one was given")
                continue
            mask = masks.get(part.name)
            if mask is None:
                masks[part.name] = torch.ones(batch, part.tokens, dtype=torch.long, device=tensor.device)
            elif tuple(mask.shape) != (batch, part.tokens):
                raise ValueError(
                    f"condition: the mask of {part.name} must have shape [{batch}, {part.tokens}], "
                    f"got {list(mask.shape)}"
                )
        unknown = sorted(set(masks) - set(self.spec.names))
        if unknown:
            raise ValueError(f"condition: masks {unknown} name no part of the spec")
        object.__setattr__(self, "tensors", {p.name: self.tensors[p.name] for p in self.spec.parts})
        object.__setattr__(self, "masks", masks)

    # -- reading ------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return int(next(iter(self.tensors.values())).shape[0])

    @property
    def device(self) -> torch.device:
        """Where the part tensors are."""
        return next(iter(self.tensors.values())).device

    @property
    def dtype(self) -> torch.dtype:
        """The part tensors' dtype (masks are int64)."""
        return next(iter(self.tensors.values())).dtype

    def __getitem__(self, name: str) -> torch.Tensor:
        """The tensor of part ``name``."""
        return self.tensors[name]

    def mask(self, name: str) -> torch.Tensor | None:
        """The attention mask of part ``name`` (None if the part declares none)."""
        return self.masks.get(name)

    # -- new conditions -----------------------------------------------------------------------------
    def _map(self, tensor_fn: Any, mask_fn: Any) -> Condition:
        return Condition(
            self.spec,
            {k: tensor_fn(v) for k, v in self.tensors.items()},
            {k: mask_fn(v) for k, v in self.masks.items()},
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Condition:
        """Tensors to ``device`` and ``dtype``; masks to ``device`` (they stay int64)."""
        return self._map(lambda t: t.to(device=device, dtype=dtype), lambda m: m.to(device=device))

    def detach(self) -> Condition:
        return self._map(lambda t: t.detach(), lambda m: m.detach())

    def select(self, rows: torch.Tensor | Sequence[int] | slice) -> Condition:
        """The rows ``rows`` (indices, a bool mask or a slice) of every tensor and mask."""
        if not isinstance(rows, slice | torch.Tensor):
            rows = torch.as_tensor(list(rows), dtype=torch.long)

        def pick(t: torch.Tensor) -> torch.Tensor:
            return t[rows.to(t.device) if isinstance(rows, torch.Tensor) else rows]

        return self._map(pick, pick)

    def expand(self, batch: int) -> Condition:
        """A one-row condition repeated to ``batch`` rows (a view, as `torch.Tensor.expand`)."""
        if self.batch_size != 1:
            raise ValueError(f"condition: only a one-row condition can be expanded, this one has {self.batch_size}")
        return self._map(lambda t: t.expand(batch, *t.shape[1:]), lambda m: m.expand(batch, *m.shape[1:]))

    def rows(self) -> list[Condition]:
        """One one-row condition per row."""
        return [self.select(slice(i, i + 1)) for i in range(self.batch_size)]

    @staticmethod
    def cat(conditions: Iterable[Condition]) -> Condition:
        """Stack the rows of conditions of one spec."""
        items = list(conditions)
        if not items:
            raise ValueError("condition: nothing to concatenate")
        spec = items[0].spec
        if any(c.spec != spec for c in items):
            raise ValueError("condition: cannot concatenate conditions of different specs")
        tensors = {name: torch.cat([c.tensors[name] for c in items]) for name in spec.names}
        masks = {name: torch.cat([c.masks[name] for c in items]) for name in items[0].masks}
        return Condition(spec, tensors, masks)

    def __repr__(self) -> str:
        return f"Condition({self.batch_size} x {self.spec})"
