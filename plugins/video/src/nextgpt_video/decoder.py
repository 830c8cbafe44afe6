"""`TextToVideoDecoder`: video from diffusers' ``TextToVideoSDPipeline`` (zeroscope, ModelScope).

The condition is the CLIP text encoder's last hidden state, ``prompt_embeds [B, 77, d]`` (``d`` =
1024 for zeroscope_v2_576w); `CLIPTextDecoder` gives the condition hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from nextgpt.conditions import Condition
from nextgpt.config import DecodeOptions
from nextgpt.decoders import CLIPTextDecoder, ddim_scheduler
from nextgpt.licences import CC_BY_NC_4

from nextgpt_video.media import VideoClip


class TextToVideoDecoder(CLIPTextDecoder):
    """Text-to-video diffusion (zeroscope), conditioned on ``[B, 77, d]`` CLIP text embeddings.

    Args:
        source: ``"tiny"``, a folder written by ``TextToVideoSDPipeline.save_pretrained``, or a
            hub id such as ``cerspense/zeroscope_v2_576w``.
        device, dtype, progress_bar, defaults, **options: see `DiffusersDecoder`.
        fps: frame rate given to the returned clips (the pipeline itself has none; 8 as in the
            zeroscope demos).

    ``generate`` uses ``num_frames``, ``height``, ``width``, ``steps``, ``guidance`` and
    ``seed`` and returns `VideoClip` objects with uint8 frames ``[T, H, W, 3]``.
    """

    backend: ClassVar[str] = "zeroscope"
    licence = CC_BY_NC_4
    supports_denoising_loss: ClassVar[bool] = True
    default_options: ClassVar[DecodeOptions] = DecodeOptions(steps=50, guidance=9.0, num_frames=16)
    """The pipeline's own defaults; the size defaults to the UNet's sample size."""
    tiny_options: ClassVar[DecodeOptions] = DecodeOptions(steps=2, num_frames=4, height=32, width=32)

    def __init__(
        self,
        source: str,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        *,
        fps: float = 8.0,
        **options: Any,
    ) -> None:
        super().__init__(source, device, dtype, **options)
        if not fps > 0:
            raise ValueError(f"decoder {self.identity}: fps must be positive, got {fps}")
        self.fps = float(fps)

    @classmethod
    def pipeline_class(cls) -> type:
        from diffusers import TextToVideoSDPipeline

        return TextToVideoSDPipeline

    @classmethod
    def build_tiny_pipeline(cls, text_width: int = 4, text_ffn: int = 16) -> Any:
        """A 3-D UNet with (8, 8) channels and cross-attention width ``text_width``, a 1-block
        VAE (latents at full resolution), a 2-layer CLIP text encoder of width ``text_width``
        (feed-forward ``text_ffn``) and a byte-level CLIP tokenizer; 32 x 32 frames by default."""
        from diffusers import AutoencoderKL, TextToVideoSDPipeline, UNet3DConditionModel
        from nextgpt.tiny.text_encoders import tiny_clip_text_encoder
        from nextgpt.tiny.tokenizers import build_clip_tokenizer

        tokenizer = build_clip_tokenizer()
        unet = UNet3DConditionModel(
            block_out_channels=(8, 8),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            cross_attention_dim=text_width,
            attention_head_dim=4,
            norm_num_groups=2,
        )
        vae = AutoencoderKL(
            block_out_channels=(8,),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",),
            up_block_types=("UpDecoderBlock2D",),
            latent_channels=4,
            norm_num_groups=2,
        )
        text_encoder = tiny_clip_text_encoder(
            tokenizer, hidden_size=text_width, intermediate_size=text_ffn, hidden_act="gelu"
        )
        return TextToVideoSDPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=ddim_scheduler(),
        )

    def _call_options(self, options: DecodeOptions) -> dict[str, Any]:
        return {
            "num_frames": options.num_frames,
            "height": options.height,
            "width": options.width,
            "output_type": "np",
        }

    def _to_media(self, output: Any, options: DecodeOptions) -> list[VideoClip]:
        # output.frames: float [B, T, H, W, 3] in [0, 1]; rounded as diffusers' numpy_to_pil does.
        frames = np.clip(np.round(np.asarray(output.frames) * 255.0), 0, 255).astype(np.uint8)
        return [VideoClip(frames=clip, fps=self.fps) for clip in frames]

    def denoising_loss(
        self, condition: Condition, media: Sequence[Any], min_snr_gamma: float | None = None
    ) -> torch.Tensor:
        """The noise-prediction loss of the frozen 3-D UNet for target videos (training option):
        ``num_frames`` evenly spaced frames at the decoder's default size, VAE-encoded per frame."""
        frames = self.defaults.num_frames or 16
        height = self.defaults.height or 320
        width = self.defaults.width or 576
        clips = torch.stack([_to_pixels(clip, frames, height, width) for clip in media])  # [B, F, 3, H, W]
        batch = clips.shape[0]
        latents = self._vae_latents(clips.flatten(0, 1))  # [B*F, c, h, w]
        latents = latents.unflatten(0, (batch, frames)).permute(0, 2, 1, 3, 4)  # [B, c, F, h, w]
        return self._noise_prediction_loss(condition, latents, min_snr_gamma)


def _to_pixels(clip: VideoClip, frames: int, height: int, width: int) -> torch.Tensor:
    """A clip -> ``[frames, 3, height, width]`` in [-1, 1] (evenly spaced frames)."""
    index = np.linspace(0, len(clip.frames) - 1, frames).round().astype(int)
    pixels = torch.from_numpy(clip.frames[index].astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
    return torch.nn.functional.interpolate(pixels, size=(height, width), mode="bilinear", align_corners=False)
