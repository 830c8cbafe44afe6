"""CLIP-based metrics from a LOCAL Hugging Face CLIP folder (nothing is downloaded).

Plugins build their CLIP metrics on these helpers: `load_clip` reads the model and processor
from a folder (``config.json``, weights, tokenizer and image-processor files, as written by
``save_pretrained`` or ``huggingface-cli download openai/clip-vit-large-patch14 --local-dir DIR``)
and `clip_score_metric` wraps them in torchmetrics' `CLIPScore` (100 x cosine similarity between
the image and the text embedding, floored at 0, averaged).

torchmetrics 1.9 expects ``get_image_features`` / ``get_text_features`` to return tensors, while
transformers 5 returns a model output whose ``pooler_output`` holds the projected embedding;
`_TensorFeatures` adapts either version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nextgpt.errors import ConfigError

CLIP_OPTION = "clip_model"
"""The metric option naming the local CLIP folder (``--metric-option clip_model=DIR``)."""


def require_path(value: Any, option: str, metric: str, what: str, want_dir: bool) -> Path:
    """``value`` as an existing local path, or a `ConfigError` saying which option is needed."""
    hint = (
        f"metric {metric!r} needs {what}: pass --metric-option {option}=PATH "
        f"(Python: metric_options={{{option!r}: PATH}}). nextgpt eval downloads nothing, so the "
        "weights must already be on disk"
    )
    if value is None or str(value).strip() == "":
        raise ConfigError(f"{hint}; option {option!r} is not set")
    path = Path(str(value)).expanduser()
    if want_dir and not path.is_dir():
        raise ConfigError(f"{hint}; {option}={str(value)!r} is not a folder")
    if not want_dir and not path.is_file():
        raise ConfigError(f"{hint}; {option}={str(value)!r} is not a file")
    return path


class _TensorFeatures(nn.Module):
    """A CLIP model whose feature methods return the projected embeddings as tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    @staticmethod
    def _tensor(out: Any) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def get_image_features(self, pixel_values: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._tensor(self.model.get_image_features(pixel_values=pixel_values))

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        return self._tensor(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


def load_clip(folder: Any, metric: str) -> tuple[nn.Module, Any]:
    """(model, processor) from a local Hugging Face CLIP folder; a `ConfigError` if it is
    missing or unreadable."""
    path = require_path(
        folder,
        CLIP_OPTION,
        metric,
        "a local Hugging Face CLIP model folder (e.g. openai/clip-vit-large-patch14)",
        want_dir=True,
    )
    from transformers import CLIPModel, CLIPProcessor

    try:
        model = CLIPModel.from_pretrained(str(path), local_files_only=True)
        processor = CLIPProcessor.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"metric {metric!r}: {CLIP_OPTION}={str(folder)!r} is not a readable CLIP model folder: {exc}"
        ) from exc
    return _TensorFeatures(model.eval()), processor


def clip_score_metric(folder: Any, metric: str, device: str | torch.device = "cpu") -> Any:
    """torchmetrics `CLIPScore` over the local CLIP model in ``folder``."""
    from torchmetrics.multimodal.clip_score import CLIPScore

    model, processor = load_clip(folder, metric)
    return CLIPScore(model_name_or_path=lambda: (model, processor)).to(device)


def save_tiny_clip(folder: str | Path, seed: int = 0, resolution: int = 32) -> Path:
    """Write a tiny random CLIP model and processor to ``folder`` (offline; for tests and toy
    worlds: the scores mean nothing, the code path is the real one). Its vision tower reads
    ``resolution`` x ``resolution`` pixels."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from nextgpt.tiny.tokenizers import build_clip_tokenizer

    tokenizer = build_clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=resolution,
            patch_size=8,
        ),
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    pixels = CLIPImageProcessor(
        size={"shortest_edge": resolution}, crop_size={"height": resolution, "width": resolution}
    )
    folder = Path(folder)
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=pixels, tokenizer=tokenizer).save_pretrained(folder)
    return folder
