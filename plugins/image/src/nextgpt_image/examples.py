"""A synthetic example image: a red disc at the top left of a light background."""

from __future__ import annotations

import numpy as np
from PIL import Image


def example_image(size: int = 64) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size]
    pixels = np.full((size, size, 3), 235, dtype=np.uint8)
    disc = (x - size * 0.3) ** 2 + (y - size * 0.3) ** 2 < (size * 0.18) ** 2
    pixels[disc] = (220, 30, 30)
    return Image.fromarray(pixels, mode="RGB")
