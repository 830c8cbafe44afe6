#!/usr/bin/env python
"""Write the toy world: ``python examples/toy_world/generate_world.py --root DIR [--seed N]``.

PNG images of coloured shapes at positions, 16 kHz WAV two-tone sounds, MP4 videos of moving
shapes, and their data files in NExT-GPT's released formats (cc3m / webvid / audiocap pairs,
T2M instructions, MosIT dialogues) for a train and a held-out split.
"""

import sys

from toy_world.cli import generate_main

if __name__ == "__main__":
    sys.exit(generate_main())
