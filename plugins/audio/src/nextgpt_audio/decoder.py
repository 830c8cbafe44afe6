"""`AudioLDMDecoder`: sound from diffusers' ``AudioLDMPipeline``.

AudioLDM is conditioned on one vector per prompt: the CLAP text embedding, L2-normalised
(512-d for AudioLDM-l-full), passed as the pipeline's 2-D ``prompt_embeds [B, d]``: the
condition is one pooled part, ``ConditionSpec.pooled_vector(d)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from nextgpt.conditions import Condition, ConditionSpec
from nextgpt.config import DecodeOptions
from nextgpt.decoders import DiffusersDecoder, ddim_scheduler
from nextgpt.licences import CC_BY_NC_SA_4

from nextgpt_audio.media import AudioClip
from nextgpt_audio.mel import MelSettings, log_mel, to_mono


class AudioLDMDecoder(DiffusersDecoder):
    """AudioLDM text-to-audio, conditioned on ``prompt_embeds [B, d]``, normalised CLAP text embeddings.

    Args:
        source: ``"tiny"``, a folder written by ``AudioLDMPipeline.save_pretrained``, or a hub id
            such as ``cvssp/audioldm-l-full``.
        device, dtype, progress_bar, defaults, **options: see `DiffusersDecoder`.

    ``generate`` uses ``seconds`` (``audio_length_in_s``), ``steps``, ``guidance`` and ``seed``
    and returns mono `AudioClip` objects at the vocoder's sampling rate (16 kHz).
    ``denoising_loss`` (the optional training loss) turns target sounds into AudioLDM's log-mel
    spectrograms (`nextgpt_audio.mel`) and VAE latents.
    """

    backend: ClassVar[str] = "audioldm"
    licence = CC_BY_NC_SA_4
    supports_denoising_loss: ClassVar[bool] = True
    default_options: ClassVar[DecodeOptions] = DecodeOptions(steps=10, guidance=2.5)
    """The pipeline's own defaults (length: the UNet's sample size, 5.12 s for AudioLDM)."""
    tiny_options: ClassVar[DecodeOptions] = DecodeOptions(steps=2)

    @classmethod
    def pipeline_class(cls) -> type:
        from diffusers import AudioLDMPipeline

        return AudioLDMPipeline

    @classmethod
    def build_tiny_pipeline(cls) -> Any:
        """UNet (8, 16) channels fed the 8-d CLAP embedding as a class embedding, a 2-block
        single-channel VAE, a 1-layer CLAP text encoder of width 8, a byte-level RoBERTa
        tokenizer and a HiFi-GAN vocoder upsampling 4x at 16 kHz (default length 0.064 s)."""
        from diffusers import AudioLDMPipeline, AutoencoderKL, UNet2DConditionModel
        from nextgpt.tiny.tokenizers import build_roberta_tokenizer
        from transformers import (
            ClapTextConfig,
            ClapTextModelWithProjection,
            SpeechT5HifiGan,
            SpeechT5HifiGanConfig,
        )

        tokenizer = build_roberta_tokenizer()
        unet = UNet2DConditionModel(
            block_out_channels=(8, 16),
            layers_per_block=1,
            sample_size=128,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=(8, 16),
            class_embed_type="simple_projection",
            projection_class_embeddings_input_dim=8,
            class_embeddings_concat=True,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            block_out_channels=[8, 16],
            in_channels=1,
            out_channels=1,
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
            latent_channels=4,
            norm_num_groups=8,
        )
        text_encoder = ClapTextModelWithProjection(
            ClapTextConfig(
                vocab_size=1000,
                hidden_size=8,
                intermediate_size=37,
                num_attention_heads=1,
                num_hidden_layers=1,
                projection_dim=8,
                max_position_embeddings=tokenizer.model_max_length + 3,
                layer_norm_eps=1e-5,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        vocoder = SpeechT5HifiGan(
            SpeechT5HifiGanConfig(
                model_in_dim=8,
                sampling_rate=16000,
                upsample_initial_channel=16,
                upsample_rates=[2, 2],
                upsample_kernel_sizes=[4, 4],
                resblock_kernel_sizes=[3, 7],
                resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]],
                normalize_before=False,
            )
        )
        return AudioLDMPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=ddim_scheduler(),
            vocoder=vocoder,
        )

    def _read_condition_spec(self, location: str) -> ConditionSpec:
        return ConditionSpec.pooled_vector(self.text_encoder_config(location).projection_dim)

    def _encode_captions(self, pipeline: Any, captions: list[str]) -> Condition:
        # _encode_prompt returns the L2-normalised CLAP text embedding [B, d] the UNet is fed.
        embeds = pipeline._encode_prompt(captions, pipeline._execution_device, 1, False)
        return Condition(self.condition_spec, {"prompt_embeds": embeds})

    def _encode_negative(self, pipeline: Any) -> Condition:
        # The pipeline's own unconditional path when it is given prompt_embeds and no negative
        # prompt. (It pads "" to prompt_embeds.shape[1], i.e. to d tokens: reproduced as is.)
        device = pipeline._execution_device
        width = self.condition_spec["prompt_embeds"].width
        dummy = torch.zeros(1, width, dtype=pipeline.text_encoder.dtype, device=device)
        both = pipeline._encode_prompt(None, device, 1, True, prompt_embeds=dummy)
        return Condition(self.condition_spec, {"prompt_embeds": both[:1]})

    def _call_options(self, options: DecodeOptions) -> dict[str, Any]:
        return {"audio_length_in_s": options.seconds, "output_type": "np"}

    def _to_media(self, output: Any, options: DecodeOptions) -> list[AudioClip]:
        rate = int(self.pipeline.vocoder.config.sampling_rate)
        return [AudioClip(waveform=audio[None, :].astype("float32"), sample_rate=rate) for audio in output.audios]

    def _denoise(self, noisy: torch.Tensor, timesteps: torch.Tensor, condition: Condition) -> torch.Tensor:
        # AudioLDM's UNet reads the CLAP embedding as a class embedding, no cross-attention input.
        return self.denoiser(
            noisy, timesteps, encoder_hidden_states=None, class_labels=condition["prompt_embeds"], return_dict=False
        )[0]

    def mel_settings(self) -> MelSettings:
        """The log-mel front end matching this pipeline's vocoder."""
        return MelSettings.from_vocoder(self.pipeline.vocoder.config)

    def target_frames(self) -> int:
        """Mel frames of a training target: ``defaults.seconds`` when set, otherwise the UNet's
        native length (as ``generate`` without ``seconds``), rounded up to what the VAE's
        downsampling divides."""
        settings = self.mel_settings()
        scale = self.pipeline.vae_scale_factor
        if self.defaults.seconds:
            frames = round(self.defaults.seconds * settings.sample_rate / settings.hop)
        else:
            frames = int(self.pipeline.unet.config.sample_size) * scale
        return -(-frames // scale) * scale

    def denoising_loss(
        self, condition: Condition, media: Sequence[AudioClip], min_snr_gamma: float | None = None
    ) -> torch.Tensor:
        """The noise-prediction loss of the frozen UNet for target sounds (training option):
        each sound mono at the vocoder's rate, cut or padded to `target_frames`, as AudioLDM's
        log-mel spectrogram ``[1, T, mels]``, encoded with the VAE."""
        settings = self.mel_settings()
        frames = self.target_frames()
        mels = [
            log_mel(to_mono(torch.from_numpy(clip.waveform), clip.sample_rate, settings.sample_rate), settings, frames)
            for clip in media
        ]
        latents = self._vae_latents(torch.stack(mels)[:, None])
        return self._noise_prediction_loss(condition, latents, min_snr_gamma)
