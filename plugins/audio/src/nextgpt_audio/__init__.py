"""nextgpt-audio: the audio modality.

Registers modality ``audio`` (placeholder ``<audio>``, signal tokens ``[AUD0]..[AUD7]`` as in the
released NExT-GPT checkpoint), the ImageBind audio encoder and two decoders: AudioLDM (a UNet
on one CLAP vector; the default) and Stable Audio Open (a diffusion transformer on T5 embeddings
with an attention mask; needs the ``stable-audio`` extra).
Heavy modules (diffusers, ImageBind) are imported only when a backend is built.
"""

from __future__ import annotations

from typing import Any

import nextgpt
from nextgpt.cards import IMAGEBIND_HUGE
from nextgpt.interfaces import DecoderBackend, EncoderBackend, MediaExtent, ModalitySpec, SignalTokenSpec
from nextgpt.licences import CC_BY_NC_SA_4, IMAGEBIND, STABILITY_COMMUNITY

from nextgpt_audio import cards
from nextgpt_audio.config import AudioConfig
from nextgpt_audio.examples import example_audio
from nextgpt_audio.licences import CLAP_LICENCE
from nextgpt_audio.media import AUDIO_EXTENSIONS, AudioClip, load_audio, save_audio

__version__ = "0.1.0"
__all__ = ["SPEC", "AudioClip", "load_audio", "save_audio"]

SPEC = ModalitySpec(
    name="audio",
    signal_tokens=SignalTokenSpec(modality="audio", prefix="AUD", count=8, placeholder="<audio>"),
    config_model=AudioConfig,
    extensions=AUDIO_EXTENSIONS,
    output_extension=".wav",
    load=load_audio,
    save=save_audio,
    example=example_audio,
    measure=lambda clip: MediaExtent(seconds=clip.seconds),
    openai_message_field="audio",  # OpenAI's message.audio
    presets={
        # Every part permits commercial use (core preset "open-7b"): CLAP in, Stable Audio Open out
        # (its licence restricts commercial use to organisations under USD 1M annual revenue).
        "open-7b": {
            "encoder": {"backend": "clap", "source": "laion/clap-htsat-unfused"},
            "decoder": {"backend": "stable-audio", "source": "stabilityai/stable-audio-open-1.0"},
        },
        # Random tiny encoder and decoder, small and fast enough for tests and the CPU demo. The
        # tiny AudioLDM's self-attention grows with the square of the length: half a second
        # takes about a third of the time of one second.
        "tiny": {
            "encoder": {"source": "tiny"},
            "decoder": {"source": "tiny"},
            "decode": {"steps": 2, "seconds": 0.5},
        },
        # The released NExT-GPT fed ImageBind audio features without the x20 logit scale.
        "nextgpt-7b-v0": {"encoder": {"options": {"logit_scale": False}}},
    },
    description="sound (WAV, FLAC, OGG); generated at 16 kHz",
)


def plan_imagebind_encoder(source: str, **options: Any) -> nextgpt.EncoderPlan:
    """The shared ImageBind backbone's size, for the memory plan (no weights read)."""
    from nextgpt.encoders.imagebind import plan_imagebind

    return plan_imagebind(source, **options)


def build_imagebind_encoder(source: str, shared: Any, **options: Any) -> nextgpt.Encoder:
    from nextgpt.encoders.imagebind import ImageBindEncoder

    from nextgpt_audio.imagebind import audio_to_imagebind

    def preprocess(clip: AudioClip):
        return audio_to_imagebind(clip.waveform, clip.sample_rate)

    return ImageBindEncoder.from_shared(source, shared, tower="audio", preprocess=preprocess, **options)


def build_audioldm(source: str, **options: Any) -> nextgpt.Decoder:
    from nextgpt_audio.decoder import AudioLDMDecoder

    return AudioLDMDecoder(source, **options)


def build_stable_audio(source: str, **options: Any) -> nextgpt.Decoder:
    from nextgpt_audio.stable_audio import StableAudioDecoder

    return StableAudioDecoder(source, **options)


def build_clap_encoder(source: str, shared: Any, **options: Any) -> nextgpt.Encoder:
    """CLAP's audio tower (Apache-2.0) from ``"tiny"``, a local folder or a hub id; ``shared`` is unused."""
    from nextgpt_audio.clap import ClapAudioEncoder

    return ClapAudioEncoder.from_source(source, **options)


IMAGEBIND_ENCODER = EncoderBackend(
    name="imagebind",
    modality="audio",
    licence=IMAGEBIND,
    build=build_imagebind_encoder,
    plan=plan_imagebind_encoder,
    card=IMAGEBIND_HUGE,
)
"""ImageBind-Huge's audio tower (CC BY-NC 4.0; its backbone is shared with the other modalities)."""


CLAP_ENCODER = EncoderBackend(
    name="clap", modality="audio", licence=CLAP_LICENCE, build=build_clap_encoder, card=cards.CLAP_HTSAT_UNFUSED
)
"""CLAP's audio tower (Apache-2.0): one projected embedding per sound."""


@nextgpt.hookimpl
def register_modalities(register):
    register(SPEC)


@nextgpt.hookimpl
def register_encoders(register):
    register(IMAGEBIND_ENCODER)
    register(CLAP_ENCODER)


@nextgpt.hookimpl
def register_decoders(register):
    # AudioLDM weights are released under CC BY-NC-SA 4.0.
    register(
        DecoderBackend(
            name="audioldm", modality="audio", licence=CC_BY_NC_SA_4, build=build_audioldm, card=cards.AUDIOLDM
        )
    )
    # Stable Audio Open 1.0: Stability AI Community licence (commercial use under USD 1M revenue).
    register(
        DecoderBackend(
            name="stable-audio",
            modality="audio",
            licence=STABILITY_COMMUNITY,
            build=build_stable_audio,
            card=cards.STABLE_AUDIO,
        )
    )
