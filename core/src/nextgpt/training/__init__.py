"""Training NExT-GPT's three alignment stages with Lightning (the ``train`` extra)."""

from nextgpt.extras import require_extra

require_extra("train", "nextgpt's training (nextgpt fit, cache, export)")
