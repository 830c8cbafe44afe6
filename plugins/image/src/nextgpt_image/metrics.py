"""Quality metrics for generated images, registered through ``register_metrics``.

* ``fid`` — text->image FID (torchmetrics `FrechetInceptionDistance`, 2048-d pool features of
  torch-fidelity's Inception v3) between the generated images and the data set's reference
  images; lower is better (NExT-GPT reports 11.28 on COCO). Options: ``inception_weights`` = the
  local file ``pt_inception-2015-12-05-6726825d.pth`` (torch-fidelity's FID Inception weights,
  from its GitHub releases); or, from Python, ``fid_feature`` = any `torch.nn.Module` mapping a
  float ``[N, 3, H, W]`` batch in [0, 1] to ``[N, d]`` features (tests use a tiny one).
  ``fid_size`` (default 299) is the side images are resized to before feature extraction.
* ``clip_score`` — torchmetrics `CLIPScore` between each generated image and its caption
  (100 x cosine, floored at 0); higher is better. Option ``clip_model`` = a local Hugging Face
  CLIP folder (e.g. openai/clip-vit-large-patch14).

Nothing is downloaded: a missing option or file is a `nextgpt.errors.ConfigError` naming it.
Metrics run on ``device`` (an option; `nextgpt eval` passes the model's device).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from nextgpt.errors import ConfigError
from nextgpt.interfaces import MetricBackend
from PIL import Image

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


def image_tensor(image: Image.Image, size: int | None = None) -> torch.Tensor:
    """A PIL image as a uint8 RGB ``[3, H, W]`` tensor, optionally resized to a square."""
    image = image.convert("RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


class FID:
    """FID between generated images (``update``'s ``generated``) and reference images."""

    def __init__(
        self,
        feature: torch.nn.Module | None = None,
        weights: str | None = None,
        size: int = 299,
        device: str = "cpu",
    ) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        if feature is not None:
            self.metric = FrechetInceptionDistance(feature=feature, normalize=True, input_img_size=(3, size, size))
        else:
            self.metric = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=weights)
        self.metric = self.metric.to(device)
        self.size = size
        self.device = device

    def _batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([image_tensor(i, self.size) for i in images]).to(self.device).float() / 255.0

    @torch.no_grad()
    def update(
        self,
        generated: Sequence[Image.Image],
        references: Sequence[Image.Image],
        captions: Sequence[str],
    ) -> None:
        if generated:
            self.metric.update(self._batch(generated), real=False)
        if references:
            self.metric.update(self._batch(references), real=True)

    def compute(self) -> float:
        real, fake = (
            int(self.metric.real_features_num_samples),
            int(self.metric.fake_features_num_samples),
        )
        if real < 2 or fake < 2:
            raise ConfigError(f"fid needs at least 2 generated and 2 reference images, got {fake} and {real}")
        return float(self.metric.compute())


def build_fid(
    inception_weights: Any = None,
    fid_feature: Any = None,
    fid_size: Any = 299,
    device: Any = "cpu",
    **_: Any,
) -> FID:
    from nextgpt.evaluation.clip import require_path

    if fid_feature is not None:
        if not isinstance(fid_feature, torch.nn.Module):
            raise ConfigError(f"metric 'fid': fid_feature must be a torch.nn.Module, got {type(fid_feature).__name__}")
        return FID(feature=fid_feature, size=int(fid_size), device=str(device))
    path = require_path(
        inception_weights,
        "inception_weights",
        "fid",
        f"the Inception v3 FID weights file {INCEPTION_FILE} (torch-fidelity's release)",
        want_dir=False,
    )
    try:
        return FID(weights=str(path), size=int(fid_size), device=str(device))
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"metric 'fid' needs torch-fidelity for its Inception network: pip install 'nextgpt-core[eval]' ({exc})"
        ) from exc
    except Exception as exc:  # a wrong or corrupt weights file
        raise ConfigError(
            f"metric 'fid': inception_weights={str(path)!r} is not a loadable {INCEPTION_FILE}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


class CLIPScoreMetric:
    """Mean CLIP score of each generated image against its caption."""

    def __init__(self, folder: Any, device: str = "cpu") -> None:
        from nextgpt.evaluation.clip import clip_score_metric

        self.metric = clip_score_metric(folder, "clip_score", device)
        self.device = device

    @torch.no_grad()
    def update(self, generated: Sequence[Image.Image], references: Sequence[Any], captions: Sequence[str]) -> None:
        if len(generated) != len(captions):
            raise ValueError(f"clip_score: {len(generated)} images but {len(captions)} captions")
        if generated:
            self.metric.update([image_tensor(i).to(self.device) for i in generated], list(captions))

    def compute(self) -> float:
        if int(self.metric.n_samples) == 0:
            raise ConfigError("clip_score: no images were scored")
        return float(self.metric.compute())


def build_clip_score(clip_model: Any = None, device: Any = "cpu", **_: Any) -> CLIPScoreMetric:
    return CLIPScoreMetric(clip_model, str(device))


METRICS = (
    MetricBackend(name="fid", modality="image", build=build_fid, higher_is_better=False, needs_references=True),
    MetricBackend(name="clip_score", modality="image", build=build_clip_score, higher_is_better=True),
)
