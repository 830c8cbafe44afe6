"""`PixArtSigmaDecoder`: images from diffusers' ``PixArtSigmaPipeline`` (a diffusion transformer).

PixArt-Sigma is conditioned on a T5 encoder's last hidden state with its attention mask:
``prompt_embeds [B, Q, d]`` (``Q`` = 300 tokens by default, ``d`` = 4096 for T5-XXL) and
``prompt_attention_mask [B, Q]``, the padding masked out of the transformer's cross-attention.
A projected condition comes with an all-ones mask. The unconditional condition is the
pipeline's own: the empty prompt padded to ``Q``, with its mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from nextgpt.conditions import Condition, ConditionPart, ConditionSpec
from nextgpt.config import DecodeOptions
from nextgpt.decoders import DiffusersDecoder
from nextgpt.errors import ConfigError
from nextgpt.licences import OPENRAIL_PLUS_PLUS

from nextgpt_image.decoder import image_to_pixels

PIXART_SIGMA = "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"


class PixArtSigmaDecoder(DiffusersDecoder):
    """PixArt-Sigma text-to-image, conditioned on T5 text embeddings with an attention mask.

    Args:
        source: ``"tiny"``, a folder written by ``PixArtSigmaPipeline.save_pretrained``, or a hub
            id such as ``PixArt-alpha/PixArt-Sigma-XL-2-1024-MS``.
        max_sequence_length: ``Q``, the caption length in T5 tokens the condition holds (the
            pipeline's ``max_sequence_length``); default 300, as PixArt-Sigma was trained, or the
            tokenizer's ``model_max_length`` if smaller (16 for ``tiny``).
        device, dtype, progress_bar, defaults, **options: see `DiffusersDecoder`.

    ``generate`` uses ``height``, ``width``, ``steps``, ``guidance`` and ``seed`` and returns PIL
    images; ``extra`` passes other call arguments. A transformer whose sample size has no
    resolution bins in diffusers (the tiny one) is called with ``use_resolution_binning=False``,
    which the pipeline would otherwise refuse. Captions are
    embedded as given (``clean_caption=False``). ``denoising_loss`` is the epsilon-prediction
    loss of the transformer (its learned-variance channels left out) on the VAE latents of the
    target images, under a DDPM schedule with the pipeline scheduler's betas.
    """

    backend: ClassVar[str] = "pixart-sigma"
    licence = OPENRAIL_PLUS_PLUS
    supports_denoising_loss: ClassVar[bool] = True
    default_options: ClassVar[DecodeOptions] = DecodeOptions(steps=20, guidance=4.5)
    tiny_options: ClassVar[DecodeOptions] = DecodeOptions(steps=2, height=32, width=32)
    binned_sample_sizes: ClassVar[tuple[int, ...]] = (32, 64, 128, 256)
    """Transformer sample sizes the pipeline has resolution bins for (256 to 2048 pixels)."""
    default_sequence_length: ClassVar[int] = 300

    def __init__(self, source: str, *args: Any, max_sequence_length: int | None = None, **kwargs: Any) -> None:
        super().__init__(source, *args, **kwargs)
        if max_sequence_length is not None and int(max_sequence_length) < 1:
            raise ConfigError(
                f"decoder {self.backend!r}: max_sequence_length must be positive, got {max_sequence_length}"
            )
        self.max_sequence_length = None if max_sequence_length is None else int(max_sequence_length)

    @classmethod
    def pipeline_class(cls) -> type:
        from diffusers import PixArtSigmaPipeline

        return PixArtSigmaPipeline

    @classmethod
    def build_tiny_pipeline(cls) -> Any:
        """A 1-layer PixArt transformer (2 heads of 8, patch 2, 8 x 8 latents, learned variance), a
        2-block VAE (latents at 1/2 resolution), a 2-layer T5 encoder of width 32 and a
        character-level T5 tokenizer; PixArt-Sigma's DPM-Solver scheduler."""
        from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel
        from nextgpt.tiny.text_encoders import tiny_t5_encoder
        from nextgpt.tiny.tokenizers import build_t5_tokenizer

        tokenizer = build_t5_tokenizer(model_max_length=16)
        transformer = PixArtTransformer2DModel(
            sample_size=8,
            num_layers=1,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=2,
            caption_channels=32,
            in_channels=4,
            out_channels=8,
            cross_attention_dim=16,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
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
        return PixArtSigmaPipeline(
            tokenizer=tokenizer,
            text_encoder=tiny_t5_encoder(tokenizer, d_model=32),
            vae=vae,
            transformer=transformer,
            scheduler=DPMSolverMultistepScheduler(),
        )

    def _read_condition_spec(self, location: str) -> ConditionSpec:
        width = int(self.text_encoder_config(location).d_model)
        length = self.max_sequence_length or min(
            self.default_sequence_length, self.tokenizer_max_length(location, fallback=self.default_sequence_length)
        )
        part = ConditionPart(name="prompt_embeds", shape=(length, width), mask="prompt_attention_mask")
        return ConditionSpec(parts=(part,))

    def _encode(self, pipeline: Any, prompt: list[str] | None, **kwargs: Any) -> tuple[Any, ...]:
        return pipeline.encode_prompt(
            prompt,
            device=pipeline._execution_device,
            clean_caption=False,
            max_sequence_length=self.condition_spec["prompt_embeds"].tokens,
            **kwargs,
        )

    def _encode_captions(self, pipeline: Any, captions: list[str]) -> Condition:
        embeds, mask, _, _ = self._encode(pipeline, captions, do_classifier_free_guidance=False)
        return Condition(self.condition_spec, {"prompt_embeds": embeds}, {"prompt_embeds": mask})

    def _encode_negative(self, pipeline: Any) -> Condition:
        # The pipeline's own unconditional path: given prompt_embeds and no negative embeddings,
        # encode_prompt embeds the negative prompt "" padded to the condition length.
        dummy = self.condition_spec.zeros(1, pipeline._execution_device, pipeline.text_encoder.dtype)
        _, _, negative, mask = self._encode(
            pipeline,
            None,
            do_classifier_free_guidance=True,
            prompt_embeds=dummy["prompt_embeds"],
            prompt_attention_mask=dummy.mask("prompt_embeds"),
        )
        return Condition(self.condition_spec, {"prompt_embeds": negative}, {"prompt_embeds": mask})

    def _pipeline_kwargs(self, condition: Condition, negative: Condition | None) -> dict[str, Any]:
        # The call's negative_prompt defaults to "", which it refuses beside negative embeddings.
        return {**super()._pipeline_kwargs(condition, negative), "negative_prompt": None}

    def _call_options(self, options: DecodeOptions) -> dict[str, Any]:
        call = {"height": options.height, "width": options.width, "output_type": "pil"}
        if int(self.denoiser.config.sample_size) not in self.binned_sample_sizes:
            call["use_resolution_binning"] = False
        return call

    def _to_media(self, output: Any, options: DecodeOptions) -> list[Any]:
        return list(output.images)

    def _denoise(self, noisy: torch.Tensor, timesteps: torch.Tensor, condition: Condition) -> torch.Tensor:
        """The transformer's noise prediction as the pipeline calls it (mask in the cross-attention,
        no micro-conditions), without the learned-variance channels."""
        transformer = self.denoiser
        output = transformer(
            noisy,
            encoder_hidden_states=condition["prompt_embeds"],
            encoder_attention_mask=condition.mask("prompt_embeds"),
            timestep=timesteps,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
            return_dict=False,
        )[0]
        if transformer.config.out_channels // 2 == transformer.config.in_channels:
            output = output.chunk(2, dim=1)[0]
        return output

    def _training_scheduler(self) -> Any:
        # DPM-Solver only adds noise at its own inference timesteps; DDPM's schedule has the same betas.
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(self.pipeline.scheduler.config)

    def denoising_loss(
        self, condition: Condition, media: Sequence[Any], min_snr_gamma: float | None = None
    ) -> torch.Tensor:
        """The noise-prediction loss of the frozen transformer for target images (training option):
        images are resized to the decoder's default size (else the transformer's native one) and
        encoded with the VAE."""
        native = int(self.denoiser.config.sample_size) * int(self.pipeline.vae_scale_factor)
        height = self.defaults.height or native
        width = self.defaults.width or native
        pixels = torch.stack([image_to_pixels(image, height, width) for image in media])
        return self._noise_prediction_loss(condition, self._vae_latents(pixels), min_snr_gamma)
