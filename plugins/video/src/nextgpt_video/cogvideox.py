"""`CogVideoXDecoder`: video from diffusers' ``CogVideoXPipeline`` with CogVideoX-2B (Apache-2.0).

CogVideoX is a 3-D diffusion transformer conditioned on a T5 encoder's last hidden state,
``prompt_embeds [B, Q, d]``: ``Q`` = the transformer's ``max_text_seq_length`` (226), ``d`` = 4096
for T5-XXL. The pipeline encodes the padded caption without an attention mask, so padding is
part of the condition and no mask is declared. The unconditional condition is the pipeline's
own: the empty prompt, encoded the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from nextgpt.conditions import Condition, ConditionSpec
from nextgpt.config import DecodeOptions
from nextgpt.licences import COGVIDEOX_2B

from nextgpt_video.decoder import _to_pixels
from nextgpt_video.t5_video import T5VideoDecoder

COGVIDEOX_2B_ID = "THUDM/CogVideoX-2b"


class CogVideoXDecoder(T5VideoDecoder):
    """CogVideoX text-to-video, conditioned on ``[B, Q, d]`` T5 text embeddings.

    Args:
        source: ``"tiny"``, a folder written by ``CogVideoXPipeline.save_pretrained``, or a hub id
            such as ``THUDM/CogVideoX-2b``.
        fps: frame rate given to the returned clips (8, as CogVideoX is trained).
        device, dtype, progress_bar, defaults, **options: see `DiffusersDecoder`.

    ``generate`` uses ``num_frames`` (``4k + 1``: the VAE compresses time 4 x after the first
    frame), ``height``, ``width``, ``steps``, ``guidance`` and ``seed`` and returns `VideoClip`
    objects with uint8 frames ``[T, H, W, 3]``. ``denoising_loss`` is the v-prediction loss of the
    transformer on the VAE latents of the target videos (`noise_prediction_loss`, with the
    pipeline scheduler's schedule).
    """

    backend: ClassVar[str] = "cogvideox"
    licence = COGVIDEOX_2B
    supports_denoising_loss: ClassVar[bool] = True
    default_options: ClassVar[DecodeOptions] = DecodeOptions(
        steps=50, guidance=6.0, num_frames=49, height=480, width=720
    )
    """The pipeline's own defaults for CogVideoX-2B."""
    tiny_options: ClassVar[DecodeOptions] = DecodeOptions(steps=2, num_frames=5, height=16, width=16)

    def __init__(self, source: str, *args: Any, fps: float = 8.0, **kwargs: Any) -> None:
        super().__init__(source, *args, **kwargs)
        if not fps > 0:
            raise ValueError(f"decoder {self.identity}: fps must be positive, got {fps}")
        self.fps = float(fps)

    @classmethod
    def pipeline_class(cls) -> type:
        from diffusers import CogVideoXPipeline

        return CogVideoXPipeline

    @classmethod
    def build_tiny_pipeline(cls) -> Any:
        """A 1-layer CogVideoX transformer (4 heads of 8, patch 2, 4 latent channels, text length
        16), a 4-block 3-D VAE (8 x spatial, 4 x temporal compression), a 2-layer T5 encoder of
        width 32 with a character-level tokenizer padding to 16, and CogVideoX's DDIM scheduler
        with v-prediction on a zero-terminal-SNR schedule, as CogVideoX-2B has."""
        from diffusers import (
            AutoencoderKLCogVideoX,
            CogVideoXDDIMScheduler,
            CogVideoXPipeline,
            CogVideoXTransformer3DModel,
        )
        from nextgpt.tiny.text_encoders import tiny_t5_encoder
        from nextgpt.tiny.tokenizers import build_t5_tokenizer

        tokenizer = build_t5_tokenizer(model_max_length=16)
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=4,
            attention_head_dim=8,
            in_channels=4,
            out_channels=4,
            time_embed_dim=2,
            text_embed_dim=32,
            num_layers=1,
            sample_width=2,
            sample_height=2,
            sample_frames=9,
            patch_size=2,
            temporal_compression_ratio=4,
            max_text_seq_length=16,
        )
        vae = AutoencoderKLCogVideoX(
            in_channels=3,
            out_channels=3,
            down_block_types=("CogVideoXDownBlock3D",) * 4,
            up_block_types=("CogVideoXUpBlock3D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=2,
            temporal_compression_ratio=4,
        )
        scheduler = CogVideoXDDIMScheduler(
            prediction_type="v_prediction",
            rescale_betas_zero_snr=True,
            timestep_spacing="trailing",
            clip_sample=False,
        )
        return CogVideoXPipeline(
            tokenizer=tokenizer,
            text_encoder=tiny_t5_encoder(tokenizer, d_model=32),
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
        )

    def _read_condition_spec(self, location: str) -> ConditionSpec:
        from diffusers import CogVideoXTransformer3DModel

        transformer = CogVideoXTransformer3DModel.load_config(location, subfolder="transformer", **self._hub_options())
        width = int(self.text_encoder_config(location).d_model)
        return ConditionSpec.sequence(int(transformer["max_text_seq_length"]), width)

    def _denoise(self, noisy: torch.Tensor, timesteps: torch.Tensor, condition: Condition) -> torch.Tensor:
        """The transformer's prediction as the pipeline calls it (rotary embeddings where the
        transformer uses them, as CogVideoX-5B does)."""
        pipeline = self.pipeline
        rotary = None
        if self.denoiser.config.use_rotary_positional_embeddings:
            scale = pipeline.vae_scale_factor_spatial
            height, width = noisy.shape[-2] * scale, noisy.shape[-1] * scale
            rotary = pipeline._prepare_rotary_positional_embeddings(height, width, noisy.shape[1], noisy.device)
        return self.denoiser(
            hidden_states=noisy,
            encoder_hidden_states=condition["prompt_embeds"],
            timestep=timesteps,
            image_rotary_emb=rotary,
            return_dict=False,
        )[0]

    def denoising_loss(
        self, condition: Condition, media: Sequence[Any], min_snr_gamma: float | None = None
    ) -> torch.Tensor:
        """The v-prediction loss of the frozen transformer for target videos (training option):
        ``num_frames`` evenly spaced frames at the decoder's default size, encoded by the 3-D VAE
        into latents ``[B, frames, channels, h, w]`` as the pipeline's are."""
        frames, height, width = self.defaults.num_frames or 49, self.defaults.height or 480, self.defaults.width or 720
        clips = torch.stack([_to_pixels(clip, frames, height, width) for clip in media])  # [B, F, 3, H, W]
        vae = self.pipeline.vae
        weight = next(vae.parameters())
        with torch.no_grad():
            latents = vae.encode(clips.permute(0, 2, 1, 3, 4).to(weight.device, weight.dtype)).latent_dist.mode()
        latents = (latents * vae.config.scaling_factor).permute(0, 2, 1, 3, 4)  # [B, f, c, h, w]
        return self._noise_prediction_loss(condition, latents, min_snr_gamma)
