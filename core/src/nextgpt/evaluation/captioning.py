"""Captioning metrics: BLEU-4, ROUGE-L and CIDEr of predicted captions against reference captions.

Every function takes ``predictions`` (one string per item) and ``references`` (a list of one or
more reference strings per item) and returns a corpus-level score. Texts are normalised by
`tokenize` first, the same way for all three metrics:

* **tokenization** — lower case, then every run of letters and digits is a token; punctuation
  and whitespace only separate tokens. This stands in for the PTB tokenizer of the COCO caption
  evaluation toolkit (``pycocoevalcap.tokenizer.ptbtokenizer``), which needs Java; scores can
  differ slightly from the official toolkit's where the two tokenizations differ (e.g. ``don't``
  becomes ``don t`` here, ``do n't`` there).
* **BLEU-4** — `torchmetrics.text.BLEUScore` (``n_gram=4``, no smoothing), corpus-level, in
  [0, 1]. Papers usually report it x100 (NExT-GPT: B@4 44.3 on COCO).
* **ROUGE-L** — `torchmetrics.text.ROUGEScore` (``rougeL`` F-measure, best over the
  references, averaged over items), in [0, 1].
* **CIDEr** — ``pycocoevalcap``'s `Cider` (CIDEr-D as in the COCO toolkit: n-grams 1..4,
  sigma 6, length penalty, x10 scaling), on the same tokens. It weighs n-grams by their
  document frequency over the evaluated set, so it needs several items: on a single item every
  n-gram has zero weight and the score is 0. As returned by the toolkit (NExT-GPT's 156.7 on COCO
  is this value x100).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens: runs of ASCII letters and digits (see the module docstring)."""
    return _TOKEN.findall(text.lower())


def normalise(text: str) -> str:
    """``text`` as its tokens joined by single spaces."""
    return " ".join(tokenize(text))


def _check(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    if isinstance(predictions, str):
        raise TypeError("predictions: expected a list of strings, got one string")
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} reference lists")
    preds = [normalise(p) for p in predictions]
    refs: list[list[str]] = []
    for index, group in enumerate(references):
        if isinstance(group, str):
            group = [group]
        if not group:
            raise ValueError(f"references[{index}] is empty: every item needs at least one reference caption")
        refs.append([normalise(r) for r in group])
    return preds, refs


def bleu4(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 in [0, 1] (torchmetrics `BLEUScore`, ``n_gram=4``)."""
    from torchmetrics.text import BLEUScore

    preds, refs = _check(predictions, references)
    if not preds:
        return math.nan
    return float(BLEUScore(n_gram=4)(preds, refs))


def rouge_l(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean ROUGE-L F-measure in [0, 1], best reference per item (torchmetrics `ROUGEScore`)."""
    from torchmetrics.text import ROUGEScore

    preds, refs = _check(predictions, references)
    if not preds:
        return math.nan
    metric = ROUGEScore(rouge_keys="rougeL", accumulate="best")
    return float(metric(preds, refs)["rougeL_fmeasure"])


def cider(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D (``pycocoevalcap``'s `Cider`) over the items; 0 for a single item."""
    from pycocoevalcap.cider.cider import Cider

    preds, refs = _check(predictions, references)
    if not preds:
        return math.nan
    gts = {i: group for i, group in enumerate(refs)}
    res = {i: [pred] for i, pred in enumerate(preds)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


CAPTION_METRICS = {"bleu4": bleu4, "rouge_l": rouge_l, "cider": cider}
"""Name -> function of every captioning metric `nextgpt eval --task caption` reports."""


def caption_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Every metric of `CAPTION_METRICS` on the same predictions and references."""
    return {name: fn(predictions, references) for name, fn in CAPTION_METRICS.items()}
