#!/usr/bin/env python
"""Build the `toy` model folder: ``python examples/toy_world/build_toy.py --out DIR``.

A tiny LLM pre-trained on the toy world's text (the stand-in for Vicuna), a tiny ImageBind
pre-trained to read the world's images, sounds and videos, tiny decoders whose caption
embeddings tell the world's captions apart, and untrained projectors; a few minutes on a CPU.
Load the result with ``NextGPTModel.from_pretrained(DIR)`` and train it with ``nextgpt fit``
(model: DIR). Options: ``--seed`` (must match the world's), ``--budget full|small``.
"""

import sys

from toy_world.cli import build_main

if __name__ == "__main__":
    sys.exit(build_main())
