"""A synthetic multimodal world for nextgpt: coloured shapes at positions (images), two-tone
sounds (audio) and moving shapes (video), with captions, pair data, T2M-style instructions and
MosIT-style dialogues in NExT-GPT's released JSON formats; plus a `toy` model built on it
(`toy_world.build`) and the metrics that show the three training stages learn
(`toy_world.learning`, `toy_world.stage_metrics`, `toy_world.metrics`)."""

from toy_world.generate import generate, load_world

__all__ = ["generate", "load_world"]
