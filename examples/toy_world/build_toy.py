#!/usr/bin/env python
"""Build the toy models: ``python examples/toy_world/build_toy.py [--out DIR]``.

`toy-base` (``DIR-base``): a tiny LLM pre-trained on the toy world's text (the stand-in for
Vicuna), a tiny ImageBind pre-trained to read the world's images, sounds and videos, diffusion
decoders trained to draw the world, and untrained projectors. `toy` (``DIR``): the base trained
through NExT-GPT's three stages on the world, which ``nextgpt demo --model toy`` plays.
Options: ``--base-only``, ``--seed`` (must match the world's), ``--budget full|small``,
``--overwrite``.
"""

import sys

from toy_world.cli import build_main

if __name__ == "__main__":
    sys.exit(build_main())
