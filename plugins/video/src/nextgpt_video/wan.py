"""`WanDecoder`: video from diffusers' ``WanPipeline`` with Wan 2.1 T2V-1.3B (Apache-2.0).

Wan is a rectified-flow 3-D diffusion transformer conditioned on a UMT5 encoder's last hidden
state, ``prompt_embeds [B, Q, d]`` (``Q`` = 512 tokens, ``d`` = 4096 for UMT5-XXL). The pipeline
encodes the caption with its attention mask, keeps each caption's own tokens and pads the rest
with zeros, so the padding is part of the condition (zeros) and no mask is declared. The
unconditional condition is the pipeline's own: the empty prompt, encoded the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from nextgpt.conditions import Condition, ConditionSpec
from nextgpt.config import DecodeOptions
from nextgpt.errors import ConfigError
from nextgpt.licences import WAN_2_1

from nextgpt_video.decoder import _to_pixels
from nextgpt_video.t5_video import T5VideoDecoder

WAN_2_1_T2V_1_3B = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"


class WanDecoder(T5VideoDecoder):
    """Wan 2.1 text-to-video, conditioned on ``[B, Q, d]`` UMT5 text embeddings.

    Args:
        source: ``"tiny"``, a folder written by ``WanPipeline.save_pretrained``, or a hub id such
            as ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``.
        max_sequence_length: ``Q``, the caption length in tokens the condition holds (the
            pipeline's ``max_sequence_length``); default 512, or the tokenizer's
            ``model_max_length`` if smaller (16 for ``tiny``).
        fps: frame rate given to the returned clips (16, as Wan 2.1 is trained).
        device, dtype, progress_bar, defaults, **options: see `DiffusersDecoder`.

    ``generate`` uses ``num_frames`` (``4k + 1``), ``height``, ``width`` (multiples of 16),
    ``steps``, ``guidance`` and ``seed`` and returns `VideoClip` objects with uint8 frames
    ``[T, H, W, 3]``. ``denoising_loss`` is the rectified-flow loss of the transformer
    (`nextgpt.training.diffusion.flow_matching_loss`) on the normalised VAE latents of the
    target videos.
    """

    backend: ClassVar[str] = "wan"
    licence = WAN_2_1
    supports_denoising_loss: ClassVar[bool] = True
    default_options: ClassVar[DecodeOptions] = DecodeOptions(
        steps=50, guidance=5.0, num_frames=81, height=480, width=832
    )
    """The pipeline's own defaults for Wan 2.1 T2V-1.3B (480p)."""
    tiny_options: ClassVar[DecodeOptions] = DecodeOptions(steps=2, num_frames=5, height=16, width=16)
    default_sequence_length: ClassVar[int] = 512

    def __init__(
        self,
        source: str,
        *args: Any,
        max_sequence_length: int | None = None,
        fps: float = 16.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(source, *args, **kwargs)
        if max_sequence_length is not None and int(max_sequence_length) < 1:
            raise ConfigError(
                f"decoder {self.backend!r}: max_sequence_length must be positive, got {max_sequence_length}"
            )
        if not fps > 0:
            raise ValueError(f"decoder {self.identity}: fps must be positive, got {fps}")
        self.max_sequence_length = None if max_sequence_length is None else int(max_sequence_length)
        self.fps = float(fps)

    @classmethod
    def pipeline_class(cls) -> type:
        from diffusers import WanPipeline

        return WanPipeline

    @classmethod
    def build_tiny_pipeline(cls) -> Any:
        """A 2-layer Wan transformer (2 heads of 12, patch 1 x 2 x 2, 16 latent channels), a Wan
        VAE of base width 3 (8 x spatial, 4 x temporal compression), a 2-layer T5 encoder of
        width 32 with a character-level tokenizer padding to 16, and Wan 2.1's UniPC
        flow-prediction scheduler (flow shift 3)."""
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
        from nextgpt.tiny.text_encoders import tiny_t5_encoder
        from nextgpt.tiny.tokenizers import build_t5_tokenizer

        tokenizer = build_t5_tokenizer(model_max_length=16)
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=16,
            out_channels=16,
            text_dim=32,
            freq_dim=256,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        )
        vae = AutoencoderKLWan(
            base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
        )
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
        return WanPipeline(
            tokenizer=tokenizer,
            text_encoder=tiny_t5_encoder(tokenizer, d_model=32),
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
        )

    def _read_condition_spec(self, location: str) -> ConditionSpec:
        width = int(self.text_encoder_config(location).d_model)
        length = self.max_sequence_length or min(
            self.default_sequence_length, self.tokenizer_max_length(location, fallback=self.default_sequence_length)
        )
        return ConditionSpec.sequence(length, width)

    def denoising_loss(
        self, condition: Condition, media: Sequence[Any], min_snr_gamma: float | None = None
    ) -> torch.Tensor:
        """The rectified-flow loss of the frozen transformer for target videos (training option):
        ``num_frames`` evenly spaced frames at the decoder's default size, encoded by the VAE and
        normalised with its latent mean and standard deviation, as the pipeline decodes them."""
        from nextgpt.training.diffusion import flow_matching_loss

        frames, height, width = self.defaults.num_frames or 81, self.defaults.height or 480, self.defaults.width or 832
        clips = torch.stack([_to_pixels(clip, frames, height, width) for clip in media])  # [B, F, 3, H, W]
        vae, transformer = self.pipeline.vae, self.denoiser
        # The transformer's own dtype and device (diffusers skips parameters it keeps in float32).
        device, dtype = transformer.device, transformer.dtype
        with torch.no_grad():
            latents = vae.encode(clips.permute(0, 2, 1, 3, 4).to(device, vae.dtype)).latent_dist.mode()
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents)
        std = torch.tensor(vae.config.latents_std).view(shape).to(latents)
        latents = ((latents - mean) / std).to(dtype)  # [B, c, f, h, w]
        condition = condition.to(device=device, dtype=dtype)

        def denoise(noisy: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
            return transformer(
                hidden_states=noisy,
                timestep=sigmas * 1000,  # the pipeline's timesteps are sigma * 1000
                encoder_hidden_states=condition["prompt_embeds"],
                return_dict=False,
            )[0]

        return flow_matching_loss(denoise, latents, min_snr_gamma)
