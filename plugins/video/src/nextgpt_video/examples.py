"""A synthetic example video: a blue square moving right, 1 s at 8 frames per second."""

from __future__ import annotations

import numpy as np

from nextgpt_video.media import VideoClip


def example_video(frames: int = 8, size: int = 64, fps: float = 8.0) -> VideoClip:
    video = np.full((frames, size, size, 3), 240, dtype=np.uint8)
    side = size // 4
    for i in range(frames):
        left = int(i * (size - side) / max(frames - 1, 1))
        video[i, size // 2 - side // 2 : size // 2 + side // 2, left : left + side] = (30, 60, 220)
    return VideoClip(frames=video, fps=fps)
