"""ImageBind's preprocessing of a video, as its ``data.py`` does it, for the ImageBind vision
tower: frames -> ``[15, 3, 2, 224, 224]`` (5 two-second clips of 2 frames, 3 spatial crops each).

Core's `nextgpt.encoders.imagebind` holds what every modality shares (the model, one instance
for all of them, `ImageBindEncoder`, and `clip_starts`, where ImageBind places the clips of a
timed medium); this module is what is particular to video, given to
`ImageBindEncoder.from_shared` as ``preprocess``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from nextgpt.encoders.imagebind import clip_starts

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""Per-channel mean of ImageBind's (CLIP's) pixel normalisation (the vision tower's, as for images)."""
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""Per-channel standard deviation of ImageBind's (CLIP's) pixel normalisation."""
FRAME_SIZE = 224
"""Side of the square crops the vision tower reads."""
CLIP_SECONDS = 2
CLIPS = 5
FRAMES_PER_CLIP = 2
SPATIAL_CROPS = 3


def _short_side_scale(video: torch.Tensor, size: int) -> torch.Tensor:
    """pytorchvideo's ``short_side_scale`` (bilinear) of ``[C, T, H, W]``."""
    _, _, h, w = video.shape
    if w < h:
        new_h, new_w = int(math.floor(h / w * size)), size
    else:
        new_h, new_w = size, int(math.floor(w / h * size))
    return torch.nn.functional.interpolate(video, size=(new_h, new_w), mode="bilinear", align_corners=False)


def _uniform_crop(video: torch.Tensor, size: int, index: int) -> torch.Tensor:
    """ImageBind's ``uniform_crop``: crop 0/1/2 = left/center/right (top/center/bottom if tall)."""
    height, width = video.shape[2], video.shape[3]
    y = int(math.ceil((height - size) / 2))
    x = int(math.ceil((width - size) / 2))
    if height > width:
        y = {0: 0, 2: height - size}.get(index, y)
    else:
        x = {0: 0, 2: width - size}.get(index, x)
    return video[:, :, y : y + size, x : x + size]


def video_to_imagebind(frames: np.ndarray, fps: float) -> torch.Tensor:
    """Video frames ``[T, H, W, 3]`` uint8 -> ``[15, 3, 2, 224, 224]`` (clips x crops, C, T, H, W).

    5 clips of 2 s placed like ImageBind; in each, the frames decord would return (indices
    ``ceil(fps * start) .. ceil(fps * end)``, cut at the last frame) subsampled uniformly to 2;
    short side scaled to 224 (bilinear), CLIP mean/std, 3 spatial crops (ImageBind's
    ``SpatialCrop``). Videos shorter than 2 s reuse their frames (every clip starts at 0).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.shape[0] == 0:
        raise ValueError(f"expected frames [T, H, W, 3] with T > 0, got shape {list(frames.shape)}")
    if not fps > 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    total = frames.shape[0]
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1, 1)
    views = []
    for start in clip_starts(total / fps, CLIP_SECONDS, CLIPS):
        first = min(math.ceil(fps * start), total - 1)
        last = max(min(math.ceil(fps * (start + CLIP_SECONDS)), total), first + 1)
        picks = torch.linspace(0, last - first - 1, FRAMES_PER_CLIP).clamp(0, last - first - 1).long()
        clip = torch.from_numpy(frames[(picks + first).numpy()]).permute(3, 0, 1, 2).float() / 255.0
        clip = (_short_side_scale(clip, FRAME_SIZE) - mean) / std
        views.extend(_uniform_crop(clip, FRAME_SIZE, index) for index in range(SPATIAL_CROPS))
    return torch.stack(views, dim=0)
