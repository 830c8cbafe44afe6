"""nextgpt-image: the image modality.

Registers modality ``image`` (placeholder ``<image>``, signal tokens ``[IMG0]..[IMG3]`` as in the
released NExT-GPT checkpoint), the ImageBind vision encoder and three decoders: Stable Diffusion
(a UNet on CLIP embeddings; the default), PixArt-Sigma (a diffusion transformer on T5
embeddings with an attention mask) and FLUX.1 [schnell] (a rectified-flow transformer on T5
embeddings and a pooled CLIP vector; Apache-2.0).
Heavy modules (diffusers, ImageBind) are imported only when a backend is built.
"""

from __future__ import annotations

from typing import Any

import nextgpt
from nextgpt.cards import IMAGEBIND_HUGE
from nextgpt.interfaces import DecoderBackend, EncoderBackend, MediaExtent, ModalitySpec, SignalTokenSpec
from nextgpt.licences import FLUX_SCHNELL, IMAGEBIND, OPENRAIL_M, OPENRAIL_PLUS_PLUS

from nextgpt_image import cards
from nextgpt_image.config import ImageConfig
from nextgpt_image.examples import example_image
from nextgpt_image.licences import SIGLIP_LICENCE
from nextgpt_image.media import IMAGE_EXTENSIONS, load_image, save_image

__version__ = "0.1.0"

SPEC = ModalitySpec(
    name="image",
    signal_tokens=SignalTokenSpec(modality="image", prefix="IMG", count=4, placeholder="<image>"),
    config_model=ImageConfig,
    extensions=IMAGE_EXTENSIONS,
    output_extension=".png",
    load=load_image,
    save=save_image,
    example=example_image,
    measure=lambda image: MediaExtent(pixels=image.width * image.height),
    presets={
        # Every part permits commercial use (core preset "open-7b"): SigLIP in, FLUX.1 [schnell] out.
        "open-7b": {
            "encoder": {"backend": "siglip", "source": "google/siglip-so400m-patch14-384"},
            "decoder": {"backend": "flux-schnell", "source": "black-forest-labs/FLUX.1-schnell"},
            "decode": {"steps": 4},
        },
        # Random tiny encoder and decoder, small and fast enough for tests and the CPU demo.
        "tiny": {
            "encoder": {"source": "tiny"},
            "decoder": {"source": "tiny"},
            "decode": {"steps": 2, "height": 32, "width": 32},
        },
    },
    description="still images (PNG, JPEG, WebP)",
)


def plan_imagebind_encoder(source: str, **options: Any) -> nextgpt.EncoderPlan:
    """The shared ImageBind backbone's size, for the memory plan (no weights read)."""
    from nextgpt.encoders.imagebind import plan_imagebind

    return plan_imagebind(source, **options)


def build_siglip_encoder(source: str, shared: Any, **options: Any) -> nextgpt.Encoder:
    """SigLIP (Apache-2.0) from ``"tiny"``, a local folder or a hub id; ``shared`` is unused."""
    from nextgpt_image.siglip import SiglipImageEncoder

    return SiglipImageEncoder.from_source(source, **options)


def build_imagebind_encoder(source: str, shared: Any, **options: Any) -> nextgpt.Encoder:
    from nextgpt.encoders.imagebind import ImageBindEncoder

    from nextgpt_image.imagebind import image_to_imagebind

    return ImageBindEncoder.from_shared(source, shared, tower="vision", preprocess=image_to_imagebind, **options)


def build_stable_diffusion(source: str, **options: Any) -> nextgpt.Decoder:
    from nextgpt_image.decoder import StableDiffusionDecoder

    return StableDiffusionDecoder(source, **options)


def build_flux_schnell(source: str, **options: Any) -> nextgpt.Decoder:
    from nextgpt_image.flux import FluxSchnellDecoder

    return FluxSchnellDecoder(source, **options)


def build_pixart_sigma(source: str, **options: Any) -> nextgpt.Decoder:
    from nextgpt_image.pixart import PixArtSigmaDecoder

    return PixArtSigmaDecoder(source, **options)


IMAGEBIND_ENCODER = EncoderBackend(
    name="imagebind",
    modality="image",
    licence=IMAGEBIND,
    build=build_imagebind_encoder,
    plan=plan_imagebind_encoder,
    card=IMAGEBIND_HUGE,
)
"""ImageBind-Huge's vision tower (CC BY-NC 4.0; its backbone is shared with the other modalities)."""
SIGLIP_ENCODER = EncoderBackend(
    name="siglip", modality="image", licence=SIGLIP_LICENCE, build=build_siglip_encoder, card=cards.SIGLIP_SO400M
)
"""SigLIP's vision tower (Apache-2.0): patch features, one token per patch."""


@nextgpt.hookimpl
def register_modalities(register):
    register(SPEC)


@nextgpt.hookimpl
def register_encoders(register):
    register(IMAGEBIND_ENCODER)
    register(SIGLIP_ENCODER)


@nextgpt.hookimpl
def register_decoders(register):
    register(
        DecoderBackend(
            name="stable-diffusion",
            modality="image",
            licence=OPENRAIL_M,
            build=build_stable_diffusion,
            card=cards.STABLE_DIFFUSION,
        )
    )
    register(
        DecoderBackend(
            name="pixart-sigma",
            modality="image",
            licence=OPENRAIL_PLUS_PLUS,
            build=build_pixart_sigma,
            card=cards.PIXART_SIGMA,
        )
    )
    register(
        DecoderBackend(
            name="flux-schnell",
            modality="image",
            licence=FLUX_SCHNELL,
            build=build_flux_schnell,
            card=cards.FLUX_SCHNELL,
        )
    )


@nextgpt.hookimpl
def register_metrics(register):
    # torchmetrics and the feature extractors are imported only when a metric is built.
    from nextgpt_image.metrics import METRICS

    for metric in METRICS:
        register(metric)
