"""`StableDiffusionDecoder`: images from a diffusers ``StableDiffusionPipeline``.

The condition is the CLIP text encoder's last hidden state, ``prompt_embeds [B, 77, d]`` (``d`` =
768 for SD-1.5, as NExT-GPT uses); `CLIPTextDecoder` gives the condition hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from nextgpt.conditions import Condition
from nextgpt.config import DecodeOptions
from nextgpt.decoders import CLIPTextDecoder, ddim_scheduler
from nextgpt.licences import OPENRAIL_M


class StableDiffusionDecoder(CLIPTextDecoder):
    """Stable Diffusion text-to-image, conditioned on ``[B, 77, d]`` CLIP text embeddings.

    Args:
        source: ``"tiny"``, a folder written by ``StableDiffusionPipeline.save_pretrained``, or a
            hub id such as ``stable-diffusion-v1-5/stable-diffusion-v1-5``.
        device, dtype, progress_bar, defaults, **options: see `DiffusersDecoder`.

    ``generate`` uses ``height``, ``width``, ``steps``, ``guidance`` and ``seed`` of the options
    and returns PIL images. The safety checker is not loaded.
    """

    backend: ClassVar[str] = "stable-diffusion"
    licence = OPENRAIL_M
    supports_denoising_loss: ClassVar[bool] = True
    default_options: ClassVar[DecodeOptions] = DecodeOptions(steps=50, guidance=7.5)
    tiny_options: ClassVar[DecodeOptions] = DecodeOptions(steps=2, height=32, width=32)

    @classmethod
    def pipeline_class(cls) -> type:
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline

    @classmethod
    def build_tiny_pipeline(cls) -> Any:
        """UNet (4, 8) channels with cross-attention width 32, a 2-block VAE (latents at 1/2
        resolution), a 2-layer CLIP text encoder of width 32 and a byte-level CLIP tokenizer."""
        from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
        from nextgpt.tiny.text_encoders import tiny_clip_text_encoder
        from nextgpt.tiny.tokenizers import build_clip_tokenizer

        tokenizer = build_clip_tokenizer()
        unet = UNet2DConditionModel(
            block_out_channels=(4, 8),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=2,
        )
        vae = AutoencoderKL(
            block_out_channels=[4, 8],
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
            latent_channels=4,
            norm_num_groups=2,
        )
        text_encoder = tiny_clip_text_encoder(tokenizer, hidden_size=32, intermediate_size=64)
        return StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=ddim_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )

    def _load_kwargs(self) -> dict[str, Any]:
        return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    def _call_options(self, options: DecodeOptions) -> dict[str, Any]:
        return {"height": options.height, "width": options.width, "output_type": "pil"}

    def _to_media(self, output: Any, options: DecodeOptions) -> list[Any]:
        return list(output.images)

    def denoising_loss(
        self, condition: Condition, media: Sequence[Any], min_snr_gamma: float | None = None
    ) -> torch.Tensor:
        """The noise-prediction loss of the frozen UNet for target images (training option):
        images are resized to the decoder's default size and encoded with the VAE."""
        height = self.defaults.height or 512
        width = self.defaults.width or 512
        pixels = torch.stack([image_to_pixels(image, height, width) for image in media])
        return self._noise_prediction_loss(condition, self._vae_latents(pixels), min_snr_gamma)


def image_to_pixels(image: Any, height: int, width: int) -> torch.Tensor:
    """A PIL image -> ``[3, height, width]`` in [-1, 1]."""
    import numpy as np
    from PIL import Image

    resized = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    array = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 127.5 - 1.0)
    return array.permute(2, 0, 1)
