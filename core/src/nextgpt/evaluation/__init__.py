"""Evaluation: captioning metrics (core, text only), CLIP helpers for plugins' media metrics,
and the runner behind `nextgpt eval`. Metrics of generated media are registered by each
modality's plugin (``register_metrics``) and looked up with ``registry.metrics_for(modality)``."""

from nextgpt.evaluation.captioning import (
    CAPTION_METRICS,
    bleu4,
    caption_scores,
    cider,
    rouge_l,
    tokenize,
)
from nextgpt.evaluation.runner import (
    EvalReport,
    MetricResult,
    evaluate_captioning,
    evaluate_generation,
)

__all__ = [
    "CAPTION_METRICS",
    "EvalReport",
    "MetricResult",
    "bleu4",
    "caption_scores",
    "cider",
    "evaluate_captioning",
    "evaluate_generation",
    "rouge_l",
    "tokenize",
]
