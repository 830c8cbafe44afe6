"""nextgpt-3d: a third-party style ``3d`` modality for nextgpt.

Registers modality ``3d`` (placeholder ``<3d>``, signal tokens ``[3D0]..[3D7]``), the ``pointnet``
encoder backend, the ``shap-e`` decoder backend (OpenAI's text-conditioned Shap-E through
diffusers) and two Chamfer-distance metrics of generated shapes (``mmd_cd``, ``cov_cd``).
Installed as its own distribution and found through the ``nextgpt`` entry-point
group; nothing in nextgpt-core knows about it. diffusers is imported only when a backend is built.
"""

from __future__ import annotations

from typing import Any

import nextgpt
from nextgpt.interfaces import (
    DecoderBackend,
    EncoderBackend,
    MetricBackend,
    ModalitySpec,
    SignalTokenSpec,
)
from nextgpt.licences import APACHE_2

from nextgpt_3d.config import SHAP_E, ThreeDConfig
from nextgpt_3d.examples import example_point_cloud
from nextgpt_3d.media import EXTENSIONS, Mesh, PointCloud, load_3d, normalise_points, save_3d

__version__ = "0.1.0"

SHAP_E_MIT = nextgpt.Licence(name="MIT", commercial_use=True, url="https://github.com/openai/shap-e/blob/main/LICENSE")
"""Shap-E's code and weights (OpenAI): MIT."""

SIGNAL_TOKENS = SignalTokenSpec(modality="3d", prefix="3D", count=8, placeholder="<3d>")

SPEC = ModalitySpec(
    name="3d",
    signal_tokens=SIGNAL_TOKENS,
    config_model=ThreeDConfig,
    extensions=EXTENSIONS,
    output_extension=".ply",
    load=load_3d,
    save=save_3d,
    example=example_point_cloud,
    presets={
        # Random tiny PointNet and Shap-E: two Heun steps, a 16^3 marching-cubes grid.
        "tiny": {
            "encoder": {"source": "tiny"},
            "decoder": {"source": "tiny"},
            "decode": {"steps": 2},
        },
    },
    description="3D shapes: point clouds in (PLY, OBJ, NPY), triangle meshes out (PLY)",
)


def build_pointnet(source: str, shared: Any = None, **options: Any) -> nextgpt.Encoder:
    from nextgpt_3d.encoder import build_pointnet_encoder

    return build_pointnet_encoder(source, shared, **options)


def build_shap_e(source: str, **options: Any) -> nextgpt.Decoder:
    from nextgpt_3d.decoder import ShapEDecoder

    return ShapEDecoder(source, **options)


def build_mmd_cd(**options: Any) -> Any:
    from nextgpt_3d.metrics import MinimumMatchingDistance

    return MinimumMatchingDistance(**options)


def build_cov_cd(**options: Any) -> Any:
    from nextgpt_3d.metrics import Coverage

    return Coverage(**options)


@nextgpt.hookimpl
def register_modalities(register):
    register(SPEC)


@nextgpt.hookimpl
def register_encoders(register):
    register(EncoderBackend(name="pointnet", modality="3d", licence=APACHE_2, build=build_pointnet))


@nextgpt.hookimpl
def register_decoders(register):
    register(DecoderBackend(name="shap-e", modality="3d", licence=SHAP_E_MIT, build=build_shap_e))


__all__ = [
    "EXTENSIONS",
    "SHAP_E",
    "SHAP_E_MIT",
    "SIGNAL_TOKENS",
    "SPEC",
    "Mesh",
    "PointCloud",
    "ThreeDConfig",
    "build_cov_cd",
    "build_mmd_cd",
    "build_pointnet",
    "build_shap_e",
    "example_point_cloud",
    "load_3d",
    "normalise_points",
    "save_3d",
]


@nextgpt.hookimpl
def register_metrics(register):
    register(
        MetricBackend(
            name="mmd_cd",
            modality="3d",
            build=build_mmd_cd,
            higher_is_better=False,
            needs_references=True,
        )
    )
    register(MetricBackend(name="cov_cd", modality="3d", build=build_cov_cd, needs_references=True))
