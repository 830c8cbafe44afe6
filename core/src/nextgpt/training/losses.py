"""Training losses of NExT-GPT.

* LM cross-entropy on supervised tokens only (labels are -100 at prompt, media and padding
  positions), shifted as Hugging Face causal LMs do: the logits at position t predict label t+1.
* The alignment loss ("l2" in the paper and the released code): the mean over tokens of the
  per-token Euclidean distance ``sqrt(sum((u - v)^2, -1))`` between the output projector's
  condition and the decoder's own text-encoder embedding of the gold caption. Not MSE. A
  condition of several parts (a sequence and a pooled vector, say) gives the mean per-token
  distance of each part, a pooled vector counting as one token, averaged over the parts. Every
  position counts, padding included: the projected condition is fed to the pipeline with an
  all-ones mask, so it learns what the pipeline's text encoder produces there too.
* Per-modality weights come from ``ModalityConfig.loss_weight`` (video 2.0 as released).

Every term is returned separately so the trainer can log each on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from nextgpt.conditions import Condition
from nextgpt.data.collate import IGNORE_INDEX


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Causal-LM cross-entropy, averaged over the supervised tokens of the batch.

    Args:
        logits: ``[B, T, V]``.
        labels: ``[B, T]`` token ids, ``-100`` where no loss applies.

    Returns a scalar; zero (with a graph) when no token is supervised.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:].to(logits.device)
    if not bool((shift_labels != IGNORE_INDEX).any()):
        return shift_logits.sum() * 0.0
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=IGNORE_INDEX
    )


def mean_token_distance(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of the per-token Euclidean distance between ``[R, Q, d]`` (or ``[R, d]``,
    one token per row) tensors."""
    if prediction.shape != target.shape:
        raise ValueError(f"alignment loss: prediction {tuple(prediction.shape)} vs target {tuple(target.shape)}")
    diff = prediction.float() - target.to(prediction.device).float()
    return diff.pow(2).sum(-1).sqrt().mean()


def alignment_loss(prediction: Condition, target: Condition) -> torch.Tensor:
    """`mean_token_distance` of each condition part, averaged over the parts."""
    if prediction.spec != target.spec:
        raise ValueError(f"alignment loss: prediction is {prediction.spec}, target is {target.spec}")
    distances = [mean_token_distance(prediction[name], target[name]) for name in prediction.spec.names]
    return torch.stack(distances).mean()


@dataclass
class LossTerms:
    """The loss of one step and its parts (unweighted alignment terms, per modality)."""

    lm: torch.Tensor
    align: dict[str, torch.Tensor] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    diffusion: dict[str, torch.Tensor] = field(default_factory=dict)
    """Optional noise-prediction terms per modality (unweighted)."""
    diffusion_weight: float = 0.0
    """Weight of the noise-prediction terms (times each modality's weight)."""

    @property
    def total(self) -> torch.Tensor:
        total = self.lm
        for name, value in self.align.items():
            total = total + self.weights.get(name, 1.0) * value
        for name, value in self.diffusion.items():
            total = total + self.diffusion_weight * self.weights.get(name, 1.0) * value
        return total

    def as_logs(self, prefix: str = "train/") -> dict[str, torch.Tensor]:
        """``{prefix}lm_loss``, ``{prefix}align_<modality>`` and ``{prefix}loss`` (detached)."""
        logs = {f"{prefix}lm_loss": self.lm.detach()}
        for name, value in self.align.items():
            logs[f"{prefix}align_{name}"] = value.detach()
        for name, value in self.diffusion.items():
            logs[f"{prefix}diffusion_{name}"] = value.detach()
        logs[f"{prefix}loss"] = self.total.detach()
        return logs


def combine(lm: torch.Tensor, align: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> LossTerms:
    return LossTerms(lm=lm, align=dict(align), weights={k: float(weights[k]) for k in align})
