"""nextgpt-video: the video modality.

Registers modality ``video`` (placeholder ``<video>``, signal tokens ``[VID0]..[VID23]`` as in the
released NExT-GPT checkpoint), the ImageBind video encoder (the vision tower over frame pairs)
and three decoders: zeroscope (diffusers' TextToVideoSDPipeline; non-commercial), CogVideoX-2B and
Wan 2.1 T2V-1.3B (3-D diffusion transformers on T5 / UMT5 embeddings; Apache-2.0).
"""

from __future__ import annotations

from typing import Any

import nextgpt
from nextgpt.cards import IMAGEBIND_HUGE
from nextgpt.interfaces import DecoderBackend, EncoderBackend, MediaExtent, ModalitySpec, SignalTokenSpec
from nextgpt.licences import CC_BY_NC_4, COGVIDEOX_2B, IMAGEBIND, WAN_2_1

from nextgpt_video import cards
from nextgpt_video.config import VideoConfig
from nextgpt_video.examples import example_video
from nextgpt_video.licences import SIGLIP_LICENCE
from nextgpt_video.media import VIDEO_EXTENSIONS, VideoClip, load_video, save_video

__version__ = "0.1.0"
__all__ = ["SPEC", "VideoClip", "load_video", "save_video"]

SPEC = ModalitySpec(
    name="video",
    signal_tokens=SignalTokenSpec(modality="video", prefix="VID", count=24, placeholder="<video>"),
    config_model=VideoConfig,
    extensions=VIDEO_EXTENSIONS,
    output_extension=".mp4",
    load=load_video,
    save=save_video,
    example=example_video,
    measure=lambda clip: MediaExtent(pixels=clip.frames.shape[1] * clip.frames.shape[2], seconds=clip.seconds),
    presets={
        # Every part permits commercial use (core preset "open-7b"): SigLIP over frames in,
        # CogVideoX-2B out (49 frames, its trained length).
        "open-7b": {
            "encoder": {"backend": "siglip", "source": "google/siglip-so400m-patch14-384"},
            "decoder": {"backend": "cogvideox", "source": "THUDM/CogVideoX-2b"},
            "decode": {"num_frames": 49},
        },
        # Random tiny encoder and decoder, small and fast enough for tests and the CPU demo.
        "tiny": {
            "encoder": {"source": "tiny"},
            "decoder": {"source": "tiny"},
            "decode": {"steps": 2, "height": 32, "width": 32, "num_frames": 4},
        },
    },
    description="video (MP4, WebM, MOV); written as H.264 MP4",
)


def plan_imagebind_encoder(source: str, **options: Any) -> nextgpt.EncoderPlan:
    """The shared ImageBind backbone's size, for the memory plan (no weights read)."""
    from nextgpt.encoders.imagebind import plan_imagebind

    return plan_imagebind(source, **options)


def build_imagebind_encoder(source: str, shared: Any, **options: Any) -> nextgpt.Encoder:
    from nextgpt.encoders.imagebind import ImageBindEncoder

    from nextgpt_video.imagebind import video_to_imagebind

    def preprocess(clip: VideoClip):
        return video_to_imagebind(clip.frames, clip.fps)

    return ImageBindEncoder.from_shared(source, shared, tower="vision", preprocess=preprocess, **options)


def build_zeroscope(source: str, **options: Any) -> nextgpt.Decoder:
    from nextgpt_video.decoder import TextToVideoDecoder

    return TextToVideoDecoder(source, **options)


def build_cogvideox(source: str, **options: Any) -> nextgpt.Decoder:
    from nextgpt_video.cogvideox import CogVideoXDecoder

    return CogVideoXDecoder(source, **options)


def build_wan(source: str, **options: Any) -> nextgpt.Decoder:
    from nextgpt_video.wan import WanDecoder

    return WanDecoder(source, **options)


def build_siglip_frames_encoder(source: str, shared: Any, **options: Any) -> nextgpt.Encoder:
    """SigLIP (Apache-2.0) over sampled frames, from ``"tiny"``, a local folder or a hub id;
    ``options``: ``num_frames`` (default 8). ``shared`` is unused."""
    from nextgpt_video.siglip_frames import SiglipFramesEncoder

    return SiglipFramesEncoder.from_source(source, **options)


IMAGEBIND_ENCODER = EncoderBackend(
    name="imagebind",
    modality="video",
    licence=IMAGEBIND,
    build=build_imagebind_encoder,
    plan=plan_imagebind_encoder,
    card=IMAGEBIND_HUGE,
)
"""ImageBind-Huge's vision tower over frame pairs (CC BY-NC 4.0; its backbone is shared with the other modalities)."""


SIGLIP_ENCODER = EncoderBackend(
    name="siglip",
    modality="video",
    licence=SIGLIP_LICENCE,
    build=build_siglip_frames_encoder,
    card=cards.SIGLIP_SO400M_FRAMES,
)
"""SigLIP's vision tower over 8 sampled frames (Apache-2.0): one pooled token per frame."""


@nextgpt.hookimpl
def register_modalities(register):
    register(SPEC)


@nextgpt.hookimpl
def register_encoders(register):
    register(IMAGEBIND_ENCODER)
    register(SIGLIP_ENCODER)


@nextgpt.hookimpl
def register_decoders(register):
    # zeroscope_v2 weights are released for non-commercial use (CC BY-NC 4.0).
    register(
        DecoderBackend(
            name="zeroscope", modality="video", licence=CC_BY_NC_4, build=build_zeroscope, card=cards.ZEROSCOPE
        )
    )
    register(
        DecoderBackend(
            name="cogvideox", modality="video", licence=COGVIDEOX_2B, build=build_cogvideox, card=cards.COGVIDEOX_2B
        )
    )
    register(
        DecoderBackend(name="wan", modality="video", licence=WAN_2_1, build=build_wan, card=cards.WAN_2_1_T2V_1_3B)
    )


@nextgpt.hookimpl
def register_metrics(register):
    # torchmetrics and the feature extractors are imported only when a metric is built.
    from nextgpt_video.metrics import METRICS

    for metric in METRICS:
        register(metric)
