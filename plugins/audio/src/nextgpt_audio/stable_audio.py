"""`StableAudioDecoder`: sound from diffusers' ``StableAudioPipeline`` (Stable Audio Open, a DiT).

Stable Audio is conditioned on a T5 encoder's last hidden state with its attention mask:
``prompt_embeds [B, Q, d]`` (``Q`` = 128 tokens, ``d`` = 768 for T5-base) and
``attention_mask [B, Q]``. The pipeline projects the embeddings, zeroes the masked positions and
appends the embeddings of the clip's start and end in seconds; with classifier-free guidance
and no negative embeddings it zeroes all of that for the unconditional branch, so this decoder
has no negative condition (None). Output is stereo at the VAE's sampling rate (44.1 kHz).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from nextgpt.conditions import Condition, ConditionPart, ConditionSpec
from nextgpt.config import DecodeOptions
from nextgpt.decoders import DiffusersDecoder
from nextgpt.errors import ConfigError
from nextgpt.licences import STABILITY_COMMUNITY

from nextgpt_audio.media import AudioClip

STABLE_AUDIO_OPEN = "stabilityai/stable-audio-open-1.0"


class StableAudioDecoder(DiffusersDecoder):
    """Stable Audio Open text-to-audio, conditioned on T5 text embeddings with an attention mask.

    Args:
        source: ``"tiny"``, a folder written by ``StableAudioPipeline.save_pretrained``, or a hub
            id such as ``stabilityai/stable-audio-open-1.0`` (gated: accept its licence first).
        device, dtype, progress_bar, defaults, **options: see `DiffusersDecoder`.

    ``generate`` uses ``seconds`` (``audio_end_in_s``; at most the model's window, 47.5 s for
    Stable Audio Open; default: the whole window), ``steps``, ``guidance`` and ``seed`` and returns
    `AudioClip` objects with the VAE's channels and rate. ``denoising_loss`` is the EDM v-prediction
    loss of the transformer (`nextgpt.training.diffusion.edm_prediction_loss`) on the VAE latents
    of the target sounds, each resampled, fitted to the VAE's channels and cut or padded to the
    window, with its own length as the seconds condition.
    """

    backend: ClassVar[str] = "stable-audio"
    licence = STABILITY_COMMUNITY
    supports_denoising_loss: ClassVar[bool] = True
    default_options: ClassVar[DecodeOptions] = DecodeOptions(steps=100, guidance=7.0)
    """The pipeline's own defaults."""
    tiny_options: ClassVar[DecodeOptions] = DecodeOptions(steps=2, seconds=0.25)

    def __init__(self, source: str, *args: Any, **kwargs: Any) -> None:
        if importlib.util.find_spec("torchsde") is None:
            raise ConfigError(
                f"decoder {self.backend!r}: its scheduler needs torchsde: pip install 'nextgpt-audio[stable-audio]'"
            )
        super().__init__(source, *args, **kwargs)

    @classmethod
    def pipeline_class(cls) -> type:
        from diffusers import StableAudioPipeline

        return StableAudioPipeline

    @classmethod
    def build_tiny_pipeline(cls) -> Any:
        """A 1-layer DiT (2 heads of 8, 4 latent channels, 256 latent frames), a stereo Oobleck VAE
        at 16 kHz with a hop of 64 (a 1.024 s window, so the tiny preset's 1 s fits), a 2-layer T5
        encoder of width 16 projected to 8, a character-level T5 tokenizer padding to 16, and
        Stable Audio's cosine DPM-Solver."""
        from diffusers import (
            AutoencoderOobleck,
            CosineDPMSolverMultistepScheduler,
            StableAudioDiTModel,
            StableAudioPipeline,
        )
        from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel
        from nextgpt.tiny.text_encoders import tiny_t5_encoder
        from nextgpt.tiny.tokenizers import build_t5_tokenizer

        tokenizer = build_t5_tokenizer(model_max_length=16)
        transformer = StableAudioDiTModel(
            sample_size=256,
            in_channels=4,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=2,
            num_key_value_attention_heads=1,
            out_channels=4,
            cross_attention_dim=16,
            time_proj_dim=8,
            global_states_input_dim=16,
            cross_attention_input_dim=8,
        )
        vae = AutoencoderOobleck(
            encoder_hidden_size=8,
            downsampling_ratios=[4, 4, 4],
            channel_multiples=[1, 2, 2],
            decoder_channels=4,
            decoder_input_channels=4,
            audio_channels=2,
            sampling_rate=16000,
        )
        return StableAudioPipeline(
            vae=vae,
            text_encoder=tiny_t5_encoder(tokenizer, d_model=16),
            projection_model=StableAudioProjectionModel(
                text_encoder_dim=16, conditioning_dim=8, min_value=0, max_value=2
            ),
            tokenizer=tokenizer,
            transformer=transformer,
            scheduler=CosineDPMSolverMultistepScheduler(
                sigma_min=0.3, sigma_max=500, sigma_data=1.0, solver_order=2, prediction_type="v_prediction"
            ),
        )

    def _read_condition_spec(self, location: str) -> ConditionSpec:
        width = int(self.text_encoder_config(location).d_model)
        length = self.tokenizer_max_length(location)
        return ConditionSpec(parts=(ConditionPart(name="prompt_embeds", shape=(length, width), mask="attention_mask"),))

    def _encode_captions(self, pipeline: Any, captions: list[str]) -> Condition:
        # StableAudioPipeline.encode_prompt's text step, before its projection (which the call does).
        length = self.condition_spec["prompt_embeds"].tokens
        inputs = pipeline.tokenizer(
            captions, padding="max_length", max_length=length, truncation=True, return_tensors="pt"
        )
        device = pipeline._execution_device
        mask = inputs.attention_mask.to(device)
        embeds = pipeline.text_encoder(inputs.input_ids.to(device), attention_mask=mask)[0]
        return Condition(self.condition_spec, {"prompt_embeds": embeds}, {"prompt_embeds": mask})

    def _encode_negative(self, pipeline: Any) -> None:
        return None  # the pipeline zeroes the whole conditioning for its unconditional branch

    def generate(self, condition: Condition, options: DecodeOptions | None = None) -> list[AudioClip]:
        """See `DiffusersDecoder.generate`. The cosine DPM-Solver asks torchsde for noise a rounding
        step past the ends of its interval, and torchsde warns about it on every call: harmless,
        so those warnings are silenced (only those)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Should have t", category=UserWarning, module=r"torchsde\.")
            return super().generate(condition, options)

    def _call_options(self, options: DecodeOptions) -> dict[str, Any]:
        longest = self.window() / self.pipeline.vae.config.sampling_rate
        if options.seconds is not None and options.seconds > longest:
            raise ConfigError(
                f"decoder {self.identity}: decode option seconds={options.seconds} is longer than the "
                f"model's window of {longest:g} s"
            )
        return {"audio_end_in_s": options.seconds, "output_type": "np"}

    def _to_media(self, output: Any, options: DecodeOptions) -> list[AudioClip]:
        rate = int(self.pipeline.vae.config.sampling_rate)
        return [AudioClip(waveform=np.asarray(audio, dtype=np.float32), sample_rate=rate) for audio in output.audios]

    # ----- the training loss ----------------------------------------------------------------

    def window(self) -> int:
        """Samples of the transformer's window (``sample_size`` latent frames of ``hop_length``)."""
        return int(self.denoiser.config.sample_size) * int(self.pipeline.vae.hop_length)

    def _fit(self, clip: AudioClip) -> torch.Tensor:
        """A clip as the VAE reads it: ``[channels, window]`` at its rate (resampled, mono
        duplicated or channels averaged, cut or zero-padded)."""
        import torchaudio

        config = self.pipeline.vae.config
        wave = torch.from_numpy(clip.waveform).float()
        if clip.sample_rate != config.sampling_rate:
            wave = torchaudio.functional.resample(wave, clip.sample_rate, config.sampling_rate)
        if wave.shape[0] != config.audio_channels:
            wave = wave.mean(0, keepdim=True).expand(config.audio_channels, -1)
        fitted = wave.new_zeros(config.audio_channels, self.window())
        length = min(wave.shape[1], fitted.shape[1])
        fitted[:, :length] = wave[:, :length]
        return fitted

    def _transformer_conditions(
        self, condition: Condition, seconds: torch.Tensor, frames: int
    ) -> dict[str, torch.Tensor]:
        """The transformer's conditioning as the pipeline builds it: projected text embeddings with
        masked positions zeroed, then the start (0 s) and end (``seconds``) embeddings; the two
        seconds embeddings as global states; rotary embeddings over them and ``frames`` latents."""
        from diffusers.models.embeddings import get_1d_rotary_pos_embed

        pipeline = self.pipeline
        projection = pipeline.projection_model
        text = projection(text_hidden_states=condition["prompt_embeds"]).text_hidden_states
        text = text * condition.mask("prompt_embeds").unsqueeze(-1).to(text.dtype)
        timing = projection(start_seconds=torch.zeros_like(seconds), end_seconds=seconds)
        start, end = timing.seconds_start_hidden_states, timing.seconds_end_hidden_states
        global_states = torch.cat([start, end], dim=2)
        rotary = get_1d_rotary_pos_embed(
            pipeline.rotary_embed_dim, frames + global_states.shape[1], use_real=True, repeat_interleave_real=False
        )
        return {
            "encoder_hidden_states": torch.cat([text, start, end], dim=1),
            "global_hidden_states": global_states,
            "rotary_embedding": rotary,
        }

    def denoising_loss(
        self, condition: Condition, media: Sequence[AudioClip], min_snr_gamma: float | None = None
    ) -> torch.Tensor:
        """The denoising loss of the frozen transformer for target sounds (training option)."""
        from nextgpt.training.diffusion import edm_prediction_loss

        transformer = self.denoiser
        weight = next(transformer.parameters())
        vae = self.pipeline.vae
        waves = torch.stack([self._fit(clip) for clip in media]).to(weight.device, vae.dtype)
        with torch.no_grad():
            latents = vae.encode(waves).latent_dist.mode().to(weight.dtype)
        longest = self.window() / vae.config.sampling_rate
        seconds = torch.tensor([min(clip.seconds, longest) for clip in media], device=weight.device)
        condition = condition.to(device=weight.device, dtype=weight.dtype)
        conditioning = self._transformer_conditions(condition, seconds, latents.shape[2])

        def denoise(model_input: torch.Tensor, noise_levels: torch.Tensor) -> torch.Tensor:
            return transformer(model_input, noise_levels, **conditioning, return_dict=False)[0]

        return edm_prediction_loss(denoise, self.pipeline.scheduler, latents, min_snr_gamma)
