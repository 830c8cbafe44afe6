"""What a training step aims at: the signal tokens the LLM must write, and the decoder
conditions the output projectors must reach.

- `OutputTurns`: in the data, an assistant turn marks a media output with its modality's
  placeholder (``<image>`` ...). The LLM must write that modality's signal tokens there, so the
  placeholder is replaced by the run ``[X0]..[X{N-1}]`` before packing: the LM loss then covers
  them, and the output projector reads their states (`NextGPTModel.signal_conditions`).
- `CaptionTargets`: the alignment loss compares the output projector's condition with the
  decoder's own encoding of the gold caption (`Decoder.condition_from_text`, no gradients),
  kept in a bounded memory cache and, with ``cache_dir``, on disk
  (`nextgpt.training.cache.ConditionCache`).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch

from nextgpt.conditions import Condition
from nextgpt.errors import ConfigError
from nextgpt.interfaces import Decoder, ModalitySpec
from nextgpt.templates import Turn
from nextgpt.training.cache import ConditionCache


class OutputTurns:
    """Rewrites assistant turns: each modality's placeholder becomes its signal-token run.

    Args:
        specs: the model's enabled modalities.
        decoders: the modalities that can be outputs (a placeholder of another modality in an
            answer is a `ConfigError`).
    """

    def __init__(self, specs: Mapping[str, ModalitySpec], decoders: Mapping[str, Decoder]) -> None:
        self.owners = {spec.signal_tokens.placeholder: name for name, spec in specs.items()}
        self.runs = {spec.signal_tokens.placeholder: "".join(spec.signal_tokens.tokens) for spec in specs.values()}
        self.outputs = set(decoders)
        alternatives = sorted(self.runs, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(p) for p in alternatives) or r"(?!x)x")

    def __call__(self, turns: Sequence[Turn]) -> list[Turn]:
        out = []
        for turn in turns:
            if turn.role == "assistant":
                for match in self.pattern.finditer(turn.text):
                    owner = self.owners[match.group(0)]
                    if owner not in self.outputs:
                        raise ConfigError(f"modality {owner!r} has no decoder in this model: it cannot be an output")
                turn = Turn(role=turn.role, text=self.pattern.sub(lambda m: self.runs[m.group(0)], turn.text))
            out.append(turn)
        return out


class CaptionTargets:
    """Decoder conditions of gold captions (the alignment targets), computed once each.

    Args:
        decoders: modality -> its decoder.
        disk: modality -> its on-disk `ConditionCache` (None: memory only).
        memory_size: conditions kept in memory (per modality and caption; oldest dropped first).
        write: add computed conditions to the disk caches (off: read only).
    """

    def __init__(
        self,
        decoders: Mapping[str, Decoder],
        disk: Mapping[str, ConditionCache] | None = None,
        memory_size: int = 4096,
        write: bool = True,
    ) -> None:
        self.decoders = decoders
        self.disk = disk or {}
        self.memory_size = memory_size
        self.write = write
        self.memory: OrderedDict[tuple[str, str], Condition] = OrderedDict()

    def __call__(self, modality: str, captions: list[str]) -> Condition:
        """The conditions of ``captions`` (one row each, in order; no gradients)."""
        disk = self.disk.get(modality)
        missing = []
        for caption in dict.fromkeys(captions):
            if (modality, caption) in self.memory:
                continue
            if disk is not None:
                stored = disk.get(caption)
                if stored is not None:
                    self._remember(modality, caption, stored)
                    continue
            missing.append(caption)
        if missing:
            with torch.no_grad():
                values = self.decoders[modality].condition_from_text(missing).detach()
            for caption, value in zip(missing, values.rows(), strict=True):
                if disk is not None:
                    value = value.to("cpu", disk.dtype)
                    if self.write:
                        disk.put(caption, value)
                self._remember(modality, caption, value)
        return Condition.cat(self.memory[(modality, c)] for c in captions)

    def _remember(self, modality: str, caption: str, value: Condition) -> None:
        self.memory[(modality, caption)] = value
        if len(self.memory) > self.memory_size:
            self.memory.popitem(last=False)
