"""Metrics of the toy world's learning benchmark (see ``benchmarks/learning.py``).

Retrieval (stages 2 and 3)
--------------------------
A predicted condition ``u`` (``[Q, d]``, the output projector's reading of the signal tokens)
retrieves the candidate caption ``c`` whose decoder embedding ``t_c`` is nearest in summed
squared Euclidean distance over the *caption positions*::

    score(c) = sum_{p in P} || u_p - t_{c,p} ||^2

where ``P`` holds the positions that at least one candidate caption fills with its own tokens
(BOS, words, EOS; `condition_mask`). Padding positions carry no caption of their own: every
caption's padding is (nearly) the same vector, so a prediction that merely learned "padding"
would sit close to *every* candidate there. Two things keep that from making retrieval easy:
(1) padding-only positions are left out of ``P``; (2) the score is a sum of per-position squared
distances, so any position where all candidates agree adds the same amount to every candidate's
score and cancels out of the ranking. (A cosine over whole flattened conditions would not have
this property: 60 shared padding rows out of 77 would pull every cosine towards 1.) Conditions
with one position (AudioLDM's ``[1, d]``) have no padding and use that position.

The mean Euclidean distance and the cosine reported beside retrieval are per position, averaged
over the gold caption's own positions (its mask), so padding does not dilute them either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F


def condition_tokens(condition: Any) -> torch.Tensor:
    """A one-part `nextgpt.conditions.Condition` as float ``[N, Q, d]`` (a pooled vector, as
    AudioLDM's, is one position): what the retrieval metrics compare."""
    (part,) = condition.spec.parts
    value = condition[part.name].float()
    return value.unsqueeze(1) if part.pooled else value


def condition_mask(decoder: Any, captions: Sequence[str]) -> torch.Tensor:
    """``[N, Q]`` bool: the condition positions each caption fills with its own tokens.

    Uses the decoder pipeline's tokenizer when the condition is one row per token (CLIP text
    encoders: BOS, the caption, the first EOS); otherwise (one pooled vector) every position."""
    q = int(decoder.condition_spec.parts[0].tokens)
    full = torch.ones((len(captions), q), dtype=torch.bool)
    tokenizer = getattr(getattr(decoder, "pipeline", None), "tokenizer", None)
    if q == 1 or tokenizer is None:
        return full
    encoded = tokenizer(list(captions), padding="max_length", max_length=q, truncation=True, return_tensors="pt")
    mask = encoded.attention_mask.bool()
    return mask if mask.shape == full.shape else full


def retrieval_scores(predictions: torch.Tensor, candidates: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``[R, N]`` summed squared distances between ``predictions`` ``[R, Q, d]`` and
    ``candidates`` ``[N, Q, d]`` over ``positions`` (``[Q]`` bool)."""
    u = predictions[:, positions].float()
    t = candidates[:, positions].float()
    return ((u[:, None] - t[None]) ** 2).sum(-1).sum(-1)


def retrieval(
    predictions: torch.Tensor, gold: Sequence[int], candidates: torch.Tensor, masks: torch.Tensor
) -> dict[str, float]:
    """Top-1 retrieval accuracy of the gold candidate, and the per-position mean Euclidean
    distance and cosine to the gold embedding over the gold caption's own positions.

    Args:
        predictions: ``[R, Q, d]`` predicted conditions.
        gold: for each prediction, the index of its caption among the candidates.
        candidates: ``[N, Q, d]`` the decoder's embeddings of the candidate captions.
        masks: ``[N, Q]`` `condition_mask` of the candidates.
    """
    if len(gold) == 0:
        return {"retrieval": float("nan"), "distance": float("nan"), "cosine": float("nan"), "n": 0}
    positions = masks.any(0)
    scores = retrieval_scores(predictions, candidates, positions)
    gold_t = torch.tensor(list(gold))
    accuracy = (scores.argmin(-1) == gold_t).float().mean()
    target = candidates[gold_t].float()
    own = masks[gold_t]
    dist = (predictions.float() - target).norm(dim=-1)
    cos = F.cosine_similarity(predictions.float(), target, dim=-1)
    return {
        "retrieval": float(accuracy),
        "distance": float((dist * own).sum() / own.sum()),
        "cosine": float((cos * own).sum() / own.sum()),
        "n": len(gold),
    }
