"""Quality metrics for generated videos, registered through ``register_metrics``.

* ``clipsim`` — CLIP similarity between a generated video and its caption, as in the
  text->video literature (CLIPSIM; NExT-GPT reports 0.3085 on MSR-VTT): for each video, the
  mean over up to ``clip_frames`` evenly spaced frames (default 8; ``0`` = every frame) of
  torchmetrics' `CLIPScore` / 100, i.e. the cosine similarity of the frame's and the caption's
  CLIP embeddings (floored at 0); then the mean over videos. Option ``clip_model`` = a local
  Hugging Face CLIP folder (e.g. openai/clip-vit-base-patch32); nothing is downloaded, a missing
  folder is a `nextgpt.errors.ConfigError` naming the option.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from nextgpt.errors import ConfigError
from nextgpt.interfaces import MetricBackend

from nextgpt_video.media import VideoClip


def sample_frames(clip: VideoClip, count: int) -> np.ndarray:
    """Up to ``count`` evenly spaced frames of ``clip`` (all of them if ``count`` <= 0)."""
    frames = clip.frames
    if count <= 0 or len(frames) <= count:
        return frames
    index = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return frames[index]


class CLIPSim:
    def __init__(self, folder: Any, frames: int = 8, device: str = "cpu") -> None:
        from nextgpt.evaluation.clip import clip_score_metric

        self.metric = clip_score_metric(folder, "clipsim", device)
        self.frames = frames
        self.device = device
        self.per_video: list[float] = []

    @torch.no_grad()
    def update(self, generated: Sequence[VideoClip], references: Sequence[Any], captions: Sequence[str]) -> None:
        if len(generated) != len(captions):
            raise ValueError(f"clipsim: {len(generated)} videos but {len(captions)} captions")
        for clip, caption in zip(generated, captions, strict=True):
            frames = torch.from_numpy(np.ascontiguousarray(sample_frames(clip, self.frames))).permute(0, 3, 1, 2)
            self.metric.reset()
            self.metric.update(list(frames.to(self.device)), [caption] * len(frames))
            self.per_video.append(float(self.metric.compute()) / 100.0)

    def compute(self) -> float:
        if not self.per_video:
            raise ConfigError("clipsim: no videos were scored")
        return float(np.mean(self.per_video))


def build_clipsim(clip_model: Any = None, clip_frames: Any = 8, device: Any = "cpu", **_: Any) -> CLIPSim:
    return CLIPSim(clip_model, int(clip_frames), str(device))


METRICS = (MetricBackend(name="clipsim", modality="video", build=build_clipsim, higher_is_better=True),)
