"""`FluxSchnellDecoder`: images from diffusers' ``FluxPipeline`` with FLUX.1 [schnell] (Apache-2.0).

FLUX is a rectified-flow diffusion transformer conditioned on two text encoders: T5's last
hidden state ``prompt_embeds [B, Q, d]`` (``Q`` = 256 tokens for schnell, ``d`` = 4096 for
T5-XXL; no attention mask: the pipeline passes the padded sequence) and CLIP's pooled output
``pooled_prompt_embeds [B, 768]``. schnell is distilled to 1-4 steps without classifier-free
guidance, so there is no negative condition (None) and ``guidance`` is ignored unless the
transformer embeds guidance (FLUX.1 [dev], whose weights are non-commercial: this backend's
licence record is schnell's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from nextgpt.conditions import Condition, ConditionPart, ConditionSpec
from nextgpt.config import DecodeOptions
from nextgpt.decoders import DiffusersDecoder
from nextgpt.errors import ConfigError
from nextgpt.licences import FLUX_SCHNELL

from nextgpt_image.decoder import image_to_pixels

FLUX_SCHNELL_ID = "black-forest-labs/FLUX.1-schnell"


class FluxSchnellDecoder(DiffusersDecoder):
    """FLUX.1 [schnell] text-to-image, conditioned on T5 embeddings and a pooled CLIP vector.

    Args:
        source: ``"tiny"``, a folder written by ``FluxPipeline.save_pretrained``, or a hub id such
            as ``black-forest-labs/FLUX.1-schnell``.
        max_sequence_length: ``Q``, the caption length in T5 tokens the condition holds (the
            pipeline's ``max_sequence_length``); default 256, schnell's limit, or the T5
            tokenizer's ``model_max_length`` if smaller (16 for ``tiny``).
        device, dtype, progress_bar, defaults, **options: see `DiffusersDecoder`.

    ``generate`` uses ``height``, ``width``, ``steps`` and ``seed`` (``guidance`` only where the
    transformer embeds guidance) and returns PIL images; ``extra`` passes other call arguments.
    ``denoising_loss`` is the rectified-flow loss of the transformer
    (`nextgpt.training.diffusion.flow_matching_loss`) on the packed VAE latents of the target
    images.
    """

    backend: ClassVar[str] = "flux-schnell"
    licence = FLUX_SCHNELL
    supports_denoising_loss: ClassVar[bool] = True
    default_options: ClassVar[DecodeOptions] = DecodeOptions(steps=4, guidance=0.0, height=1024, width=1024)
    tiny_options: ClassVar[DecodeOptions] = DecodeOptions(steps=2, height=32, width=32)
    default_sequence_length: ClassVar[int] = 256

    def __init__(self, source: str, *args: Any, max_sequence_length: int | None = None, **kwargs: Any) -> None:
        super().__init__(source, *args, **kwargs)
        if max_sequence_length is not None and not 0 < int(max_sequence_length) <= 512:
            raise ConfigError(
                f"decoder {self.backend!r}: max_sequence_length must be in 1..512, got {max_sequence_length}"
            )
        self.max_sequence_length = None if max_sequence_length is None else int(max_sequence_length)

    @classmethod
    def pipeline_class(cls) -> type:
        from diffusers import FluxPipeline

        return FluxPipeline

    @classmethod
    def build_tiny_pipeline(cls) -> Any:
        """A FLUX transformer of one double and one single block (2 heads of 8, 16 packed latent
        channels), a 2-block VAE with 4 latent channels (1/2 resolution), a 2-layer CLIP text
        encoder of width 32 (pooled 32), a 2-layer T5 encoder of width 32 with a character-level
        tokenizer padding to 16, and FLUX's flow-matching Euler scheduler."""
        from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
        from nextgpt.tiny.text_encoders import tiny_clip_text_encoder, tiny_t5_encoder
        from nextgpt.tiny.tokenizers import build_clip_tokenizer, build_t5_tokenizer

        clip_tokenizer = build_clip_tokenizer()
        t5_tokenizer = build_t5_tokenizer(model_max_length=16)
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            axes_dims_rope=(2, 2, 4),
        )
        vae = AutoencoderKL(
            block_out_channels=[4, 8],
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
            latent_channels=4,
            norm_num_groups=2,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        )
        return FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=vae,
            text_encoder=tiny_clip_text_encoder(clip_tokenizer, hidden_size=32, intermediate_size=37),
            tokenizer=clip_tokenizer,
            text_encoder_2=tiny_t5_encoder(t5_tokenizer, d_model=32),
            tokenizer_2=t5_tokenizer,
            transformer=transformer,
        )

    def _read_condition_spec(self, location: str) -> ConditionSpec:
        from transformers import AutoConfig

        t5 = AutoConfig.from_pretrained(location, subfolder="text_encoder_2", **self._hub_options())
        clip = self.text_encoder_config(location)
        length = self.max_sequence_length or min(
            self.default_sequence_length,
            self.tokenizer_max_length(location, fallback=self.default_sequence_length, subfolder="tokenizer_2"),
        )
        return ConditionSpec(
            parts=(
                ConditionPart(name="prompt_embeds", shape=(length, int(t5.d_model))),
                ConditionPart(name="pooled_prompt_embeds", shape=(int(clip.hidden_size),)),
            )
        )

    def _encode_captions(self, pipeline: Any, captions: list[str]) -> Condition:
        embeds, pooled, _ = pipeline.encode_prompt(
            captions,
            device=pipeline._execution_device,
            max_sequence_length=self.condition_spec["prompt_embeds"].tokens,
        )
        return Condition(self.condition_spec, {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled})

    def _encode_negative(self, pipeline: Any) -> None:
        return None  # schnell runs without classifier-free guidance

    def _call_options(self, options: DecodeOptions) -> dict[str, Any]:
        return {
            "height": options.height,
            "width": options.width,
            "max_sequence_length": self.condition_spec["prompt_embeds"].tokens,
            "output_type": "pil",
        }

    def _to_media(self, output: Any, options: DecodeOptions) -> list[Any]:
        return list(output.images)

    def denoising_loss(
        self, condition: Condition, media: Sequence[Any], min_snr_gamma: float | None = None
    ) -> torch.Tensor:
        """The rectified-flow loss of the frozen transformer for target images (training option):
        images are resized to the decoder's default size, encoded with the VAE (shifted and
        scaled as the pipeline decodes them) and packed into 2 x 2 patches, as the pipeline's
        latents are."""
        from nextgpt.training.diffusion import flow_matching_loss

        pipeline, transformer = self.pipeline, self.denoiser
        # The transformer's own dtype and device (diffusers skips parameters it keeps in float32).
        device, dtype = transformer.device, transformer.dtype
        height, width = self.defaults.height or 1024, self.defaults.width or 1024
        pixels = torch.stack([image_to_pixels(image, height, width) for image in media])
        vae = pipeline.vae
        with torch.no_grad():
            latents = vae.encode(pixels.to(device, vae.dtype)).latent_dist.mode()
        latents = ((latents - vae.config.shift_factor) * vae.config.scaling_factor).to(dtype)
        batch, channels, rows, cols = latents.shape
        packed = pipeline._pack_latents(latents, batch, channels, rows, cols)
        image_ids = pipeline._prepare_latent_image_ids(batch, rows // 2, cols // 2, device, dtype)
        condition = condition.to(device=device, dtype=dtype)
        text_ids = torch.zeros(condition.spec["prompt_embeds"].tokens, 3, device=device, dtype=dtype)
        guidance = None
        if transformer.config.guidance_embeds:
            guidance = torch.full((batch,), float(self.defaults.guidance or 3.5), device=device)

        def denoise(noisy: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
            return transformer(
                hidden_states=noisy,
                timestep=sigmas.to(dtype),  # the pipeline passes timestep / 1000 = sigma
                guidance=guidance,
                pooled_projections=condition["pooled_prompt_embeds"],
                encoder_hidden_states=condition["prompt_embeds"],
                txt_ids=text_ids,
                img_ids=image_ids,
                return_dict=False,
            )[0]

        return flow_matching_loss(denoise, packed, min_snr_gamma)
