"""ImageBind's preprocessing of an image, as its ``data.py`` does it, for the ImageBind vision
tower: a PIL image -> ``[3, 224, 224]``.

Core's `nextgpt.encoders.imagebind` holds what every modality shares (the model, one instance
for all of them, and `ImageBindEncoder`, one tower's view of it); this module is what is
particular to images, given to `ImageBindEncoder.from_shared` as ``preprocess``.
"""

from __future__ import annotations

from typing import Any

import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""Per-channel mean of ImageBind's (CLIP's) pixel normalisation."""
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""Per-channel standard deviation of ImageBind's (CLIP's) pixel normalisation."""
IMAGE_SIZE = 224
"""Side of the square the vision tower reads."""


def image_to_imagebind(image: Any) -> torch.Tensor:
    """A PIL image -> ``[3, 224, 224]``: bicubic short side 224, center crop, CLIP mean/std."""
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.Resize(IMAGE_SIZE, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(IMAGE_SIZE),
            transforms.ToTensor(),
            transforms.Normalize(mean=CLIP_MEAN, std=CLIP_STD),
        ]
    )
    return transform(image.convert("RGB"))
