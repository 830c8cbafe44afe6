"""`ShapEDecoder`: triangle meshes from OpenAI's text-conditioned Shap-E (``ShapEPipeline``).

Shap-E's prior (a ``PriorTransformer`` sampled with a Karras-sigma ``HeunDiscreteScheduler``)
denoises a latent ``[num_embeddings, embedding_dim]`` conditioned on one vector: the CLIP text
encoder's projected ``text_embeds`` of the prompt, divided by its norm and multiplied by
``sqrt(projection_dim)`` (``ShapEPipeline._encode_prompt``). That vector is the condition here,
one pooled part ``prompt_embeds [B, d]``; the unconditional one is zeros, as in the pipeline's
classifier-free guidance.
The latent parametrises an MLP whose signed distance field ``ShapERenderer.decode_to_mesh``
turns into a mesh with marching cubes.

``ShapEPipeline.__call__`` accepts only text prompts, so ``generate`` runs the pipeline's own
denoising loop with the condition in place of the encoded prompt. Conditions are never decoded
to text.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import torch
from nextgpt.conditions import Condition, ConditionSpec
from nextgpt.config import DecodeOptions
from nextgpt.decoders import TINY, DiffusersDecoder
from nextgpt.errors import ConfigError

from nextgpt_3d import SHAP_E_MIT
from nextgpt_3d.media import Mesh

logger = logging.getLogger(__name__)


PIPELINE_STEPS = 25
PIPELINE_GUIDANCE = 4.0
"""``ShapEPipeline.__call__``'s defaults, used where neither the call nor the decoder sets one."""


class ShapEDecoder(DiffusersDecoder):
    """Shap-E text-to-3D, conditioned on ``prompt_embeds [B, d]``, scaled CLIP text embeddings.

    Args:
        source: ``"tiny"``, a folder written by ``ShapEPipeline.save_pretrained``, or a hub id
            such as ``openai/shap-e``.
        grid_size: resolution of the marching-cubes grid ``decode_to_mesh`` samples the signed
            distance field on (Shap-E uses 128; the tiny pipeline 16). More is finer and slower
            (cubic). The default of every call; one call sets its own with the decode option
            ``extra={"grid_size": N}`` (``--decode-option grid_size=N`` on the command line).
        device, dtype, progress_bar, defaults, **options: see `DiffusersDecoder`.

    ``generate`` uses ``steps``, ``guidance`` (classifier-free guidance when above 1), ``seed``
    and ``extra["grid_size"]`` of the options and returns one `nextgpt_3d.media.Mesh` per condition row, with the
    renderer's vertex colours.
    """

    backend: ClassVar[str] = "shap-e"
    licence = SHAP_E_MIT
    tiny_version: ClassVar[int] = 1
    default_options: ClassVar[DecodeOptions] = DecodeOptions(steps=64, guidance=15.0)
    tiny_options: ClassVar[DecodeOptions] = DecodeOptions(steps=2)
    default_grid_size: ClassVar[int] = 128
    tiny_grid_size: ClassVar[int] = 16

    def __init__(self, source: str, *args: Any, grid_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(source, *args, **kwargs)
        if grid_size is None:
            grid_size = self.tiny_grid_size if self.source == TINY else self.default_grid_size
        if int(grid_size) < 2:
            raise ConfigError(f"decoder 'shap-e': grid_size must be at least 2, got {grid_size!r}")
        self.grid_size = int(grid_size)

    # ----- DiffusersDecoder hooks -----------------------------------------------------------

    @classmethod
    def pipeline_class(cls) -> type:
        from diffusers import ShapEPipeline

        return ShapEPipeline

    @classmethod
    def build_tiny_pipeline(cls) -> Any:
        """A 1-layer prior (2 heads of 16, latents 32 x 16), a 2-layer CLIP text encoder of width
        32 projecting to 32, a renderer whose MLP is 8 wide (its four projected layers 8 vectors
        each, so 32 latent rows), the openai/shap-e scheduler settings, and a computed
        marching-cubes table (the released weights carry theirs)."""
        from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEPipeline
        from diffusers.pipelines.shap_e.renderer import ShapERenderer
        from nextgpt.tiny.text_encoders import tiny_clip_text_encoder
        from nextgpt.tiny.tokenizers import build_clip_tokenizer

        from nextgpt_3d.marching_cubes import triangle_table

        tokenizer = build_clip_tokenizer()
        text_encoder = tiny_clip_text_encoder(tokenizer, hidden_size=32, intermediate_size=64, with_projection=True)
        prior = PriorTransformer(
            num_attention_heads=2,
            attention_head_dim=16,
            num_layers=1,
            embedding_dim=16,
            num_embeddings=32,
            embedding_proj_dim=32,
            clip_embed_dim=32,
            time_embed_dim=64,
            additional_embeddings=0,
            time_embed_act_fn="gelu",
            norm_in_type="layer",
            embedding_proj_norm_type="layer",
            encoder_hid_proj_type=None,
            added_emb_type=None,
        )
        renderer = ShapERenderer(
            param_shapes=((8, 93), (8, 8), (8, 8), (8, 8)),
            d_latent=16,
            d_hidden=8,
            n_output=12,
            background=(255.0, 255.0, 255.0),
        )
        cases, masks = triangle_table()
        renderer.mesh_decoder.cases.copy_(cases)
        renderer.mesh_decoder.masks.copy_(masks)
        scheduler = HeunDiscreteScheduler(
            num_train_timesteps=1024,
            beta_schedule="exp",
            prediction_type="sample",
            use_karras_sigmas=True,
            clip_sample=True,
            clip_sample_range=1.0,
        )
        return ShapEPipeline(
            prior=prior,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            scheduler=scheduler,
            shap_e_renderer=renderer,
        )

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.pipeline.prior

    def _read_condition_spec(self, location: str) -> ConditionSpec:
        return ConditionSpec.pooled_vector(int(self.text_encoder_config(location).projection_dim))

    def _encode_captions(self, pipeline: Any, captions: list[str]) -> Condition:
        embeds = pipeline._encode_prompt(captions, pipeline._execution_device, 1, False)
        return Condition(self.condition_spec, {"prompt_embeds": embeds})

    def _encode_negative(self, pipeline: Any) -> Condition:
        # ShapEPipeline._encode_prompt's unconditional embedding: zeros (and zero after rescaling).
        weight = next(pipeline.prior.parameters())
        return self.condition_spec.zeros(1, weight.device, weight.dtype)

    def _call_options(self, options: DecodeOptions) -> dict[str, Any]:
        """``decode_to_mesh`` keyword arguments: the grid (``extra["grid_size"]``, otherwise the
        decoder's own); any other ``extra`` name is an error."""
        unknown = sorted(set(options.extra) - {"grid_size"})
        if unknown:
            raise ConfigError(f"decoder {self.identity}: decode option extra.{unknown[0]}: Shap-E takes only grid_size")
        grid_size = int(options.extra.get("grid_size", self.grid_size))
        if grid_size < 2:
            raise ConfigError(
                f"decoder {self.identity}: decode option extra.grid_size must be at least 2, got {grid_size}"
            )
        return {"grid_size": grid_size}

    def _to_media(self, output: Any, options: DecodeOptions) -> list[Any]:
        """``MeshDecoderOutput``s (or ``None`` for an empty surface) -> `Mesh` objects."""
        meshes = []
        for raw in output:
            if raw is None:
                meshes.append(Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)))
                continue
            channels = raw.vertex_channels or {}
            colors = None
            if all(c in channels for c in "RGB"):
                colors = torch.stack([channels[c] for c in "RGB"], dim=1).float().cpu().numpy()
            meshes.append(Mesh(raw.verts.float().cpu().numpy(), raw.faces.cpu().numpy(), colors))
        return meshes

    # ----- generation -----------------------------------------------------------------------

    def denoise(self, condition: Condition, options: DecodeOptions | None = None) -> torch.Tensor:
        """Sample Shap-E latents ``[B, num_embeddings, embedding_dim]`` for ``condition``:
        ``ShapEPipeline.__call__``'s loop, with the condition as the prompt embedding and zeros as
        the unconditional one.

        Args:
            condition: decoder conditions, e.g. from an `OutputProjector` or
                `condition_from_text`; cast to the prior's device and dtype.
            options: ``steps``, ``guidance`` and ``seed``; unset fields come from
                ``self.defaults``, then from the pipeline's defaults (25 steps, guidance 4).
                The seed makes a CPU generator, so a seed gives the same latents on any device.
        """
        self._check_condition(condition)
        opts = (options or DecodeOptions()).merged_over(self.defaults)
        steps = opts.steps or PIPELINE_STEPS
        guidance = PIPELINE_GUIDANCE if opts.guidance is None else opts.guidance
        generator = None if opts.seed is None else torch.Generator().manual_seed(opts.seed)
        pipeline = self.pipeline
        weight = next(pipeline.prior.parameters())
        dtype, device = weight.dtype, weight.device
        embeds = condition.detach().to(device=device, dtype=dtype)["prompt_embeds"]
        batch = embeds.shape[0]
        do_guidance = guidance > 1.0
        if do_guidance:
            negative = self.negative_condition().to(device=device, dtype=dtype)["prompt_embeds"]
            embeds = torch.cat([negative.expand(batch, -1), embeds])
        prior, scheduler = pipeline.prior, pipeline.scheduler
        num_embeddings, embedding_dim = prior.config.num_embeddings, prior.config.embedding_dim
        with self._lock, torch.no_grad():  # the scheduler keeps per-run state
            scheduler.set_timesteps(steps, device=device)
            latents = pipeline.prepare_latents(
                (batch, num_embeddings * embedding_dim), dtype, device, generator, None, scheduler
            )
            latents = latents.reshape(batch, num_embeddings, embedding_dim)
            self._configure_progress_bar(pipeline)
            for t in pipeline.progress_bar(scheduler.timesteps):
                model_input = torch.cat([latents] * 2) if do_guidance else latents
                scaled = scheduler.scale_model_input(model_input, t)
                predicted = prior(scaled, timestep=t, proj_embedding=embeds).predicted_image_embedding
                predicted, _ = predicted.split(scaled.shape[2], dim=2)  # drop the variance
                if do_guidance:
                    uncond, cond = predicted.chunk(2)
                    predicted = uncond + guidance * (cond - uncond)
                latents = scheduler.step(predicted, timestep=t, sample=latents).prev_sample
        return latents

    def meshes_from_latents(self, latents: torch.Tensor, options: DecodeOptions | None = None) -> list[Mesh]:
        """Marching cubes on each latent's signed distance field (``decode_to_mesh``), on the
        grid `_call_options` reads from ``options``."""
        opts = (options or DecodeOptions()).merged_over(self.defaults)
        mesh_options = self._call_options(opts)
        pipeline = self.pipeline
        renderer = pipeline.shap_e_renderer
        device = next(renderer.parameters()).device
        raw = []
        # decode_to_mesh writes each latent's MLP into the renderer: one call at a time
        with self._lock, torch.no_grad():
            for latent in latents:
                try:
                    raw.append(renderer.decode_to_mesh(latent[None], device, **mesh_options))
                except ValueError as exc:
                    # decode_to_mesh fails on torch.cat([]) when the field has no zero crossing.
                    if "non-empty list" not in str(exc):
                        raise
                    logger.warning(
                        "decoder %s: the signed distance field has no surface; empty mesh",
                        self.identity,
                    )
                    raw.append(None)
        return self._to_media(raw, opts)

    def generate(self, condition: Condition, options: DecodeOptions | None = None) -> list[Mesh]:
        """One `Mesh` per row of ``condition`` (see `denoise` for ``options``)."""
        opts = (options or DecodeOptions()).merged_over(self.defaults)
        self._call_options(opts)  # a bad extra fails before the prior runs
        return self.meshes_from_latents(self.denoise(condition, opts), opts)


__all__ = ["PIPELINE_GUIDANCE", "PIPELINE_STEPS", "ShapEDecoder"]
