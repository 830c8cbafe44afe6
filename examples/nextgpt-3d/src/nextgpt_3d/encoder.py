"""The ``pointnet`` encoder backend: a compact PointNet (Qi et al., 2017) over point clouds.

A shared MLP lifts every point to a feature vector, a max-pool over the points makes the result
independent of their order, and a linear head gives one ``[dim]`` feature per cloud, returned as
``[B, 1, dim]`` (one input token, like ImageBind's). The network is a diffusers
``ModelMixin``/``ConfigMixin``: ``save_pretrained`` writes ``config.json`` + safetensors and
``from_pretrained`` reads them back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from nextgpt.errors import ConfigError, NextGPTError
from nextgpt.interfaces import Encoder, Licence
from nextgpt.licences import APACHE_2
from torch import nn

from nextgpt_3d.media import Mesh, PointCloud, normalise_points

TINY = "tiny"
TINY_VERSION = 1
"""Bump when `TINY_CONFIG` changes: it is part of the tiny encoder's identity."""
TINY_CONFIG: dict[str, Any] = {"hidden_sizes": (16, 32), "out_dim": 32, "num_points": 256}
"""The random tiny PointNet used by tests and the ``tiny`` preset."""
TINY_SEED = 0


class PointNet(ModelMixin, ConfigMixin):
    """PointNet's classification trunk without its input/feature transforms.

    Args:
        hidden_sizes: widths of the shared per-point MLP (each layer Linear + ReLU); PointNet
            uses (64, 64, 64, 128, 1024).
        out_dim: width of the pooled feature after the linear head (the encoder's ``dim``).
        num_points: how many points a cloud is resampled to before encoding.
    """

    @register_to_config
    def __init__(
        self,
        hidden_sizes: tuple[int, ...] = (64, 64, 64, 128, 1024),
        out_dim: int = 1024,
        num_points: int = 1024,
    ) -> None:
        super().__init__()
        widths = [3, *hidden_sizes]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(d_in, d_out), nn.ReLU()]
        self.point_mlp = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], out_dim)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """``[B, N, 3]`` points -> ``[B, out_dim]`` features."""
        return self.head(self.point_mlp(points).amax(dim=1))


def resample(points: np.ndarray, num_points: int, seed: int = 0) -> np.ndarray:
    """Exactly ``num_points`` of ``points`` ``[N, 3]``, chosen the same way on every call.

    With ``N >= num_points``, a subset without repeats drawn by a fixed-seed generator; with fewer,
    every point as often as fits and a fixed-seed subset for the remainder.
    """
    n = len(points)
    if n == 0:
        raise ValueError("cannot resample an empty point cloud")
    rng = np.random.default_rng(seed)
    if n >= num_points:
        index = np.sort(rng.choice(n, num_points, replace=False))
    else:
        index = np.concatenate(
            [
                np.tile(np.arange(n), num_points // n),
                np.sort(rng.choice(n, num_points % n, replace=False)),
            ]
        )
    return points[index]


class PointNetEncoder(Encoder):
    """A frozen `PointNet` as a nextgpt `Encoder` of the ``3d`` modality.

    Args:
        network: the PointNet (frozen and put in eval mode here).
        identity: names the network and its weights (feature caches are keyed by it).
        licence: the licence of the weights.
    """

    def __init__(self, network: PointNet, identity: str, licence: Licence = APACHE_2) -> None:
        super().__init__()
        self.network = network.eval()
        for param in self.network.parameters():
            param.requires_grad_(False)
        self.dim = int(network.config.out_dim)
        self.num_points = int(network.config.num_points)
        self.identity = identity
        self.licence = licence
        self.eval()

    @classmethod
    def from_source(cls, source: str, **options: Any) -> PointNetEncoder:
        """Build from ``"tiny"`` (random tiny weights, the same every time) or a local folder
        written by `PointNet.save_pretrained` (or the weights file inside one).

        Raises:
            ConfigError: for options other than ``num_points``.
            NextGPTError: naming ``source`` when it does not exist or cannot be loaded.
        """
        unknown = sorted(set(options) - {"num_points"})
        if unknown:
            raise ConfigError(
                f"encoder 'pointnet' (source {source!r}): unknown option(s) {unknown}; known: ['num_points']"
            )
        if source == TINY:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(TINY_SEED)
                network = PointNet(**TINY_CONFIG)
            identity = f"pointnet:tiny-v{TINY_VERSION}"
        else:
            folder = Path(source).expanduser()
            if folder.is_file() and folder.suffix in (".safetensors", ".bin", ".json"):
                folder = folder.parent
            if not folder.is_dir():
                raise NextGPTError(
                    f"encoder 'pointnet': source {source!r} does not exist (expected 'tiny' or a "
                    "folder written by nextgpt_3d.encoder.PointNet.save_pretrained)"
                )
            if not (folder / "config.json").is_file():
                raise NextGPTError(f"encoder 'pointnet': source folder {source!r} has no config.json")
            try:
                network = PointNet.from_pretrained(str(folder))
            except Exception as exc:
                raise NextGPTError(
                    f"encoder 'pointnet': could not load weights from {source!r}: {type(exc).__name__}: {exc}"
                ) from exc
            identity = f"pointnet:{folder.resolve()}"
        if "num_points" in options:
            network.register_to_config(num_points=int(options["num_points"]))
            identity += f"@{int(options['num_points'])}"
        return cls(network, identity)

    def preprocess(self, media: PointCloud | Mesh | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Centre and scale one cloud into the unit sphere, then resample it to
        ``num_points`` points: ``float32 [num_points, 3]``.

        Args:
            media: a `PointCloud`, a `Mesh` (its vertices are used) or an ``[N, 3]`` array.
        """
        if isinstance(media, Mesh):
            points = media.vertices
        elif isinstance(media, PointCloud):
            points = media.points
        elif isinstance(media, torch.Tensor):
            points = media.detach().cpu().numpy()
        else:
            points = np.asarray(media)
        if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
            raise ValueError(f"expected a non-empty [N, 3] point cloud, got {list(points.shape)}")
        return torch.from_numpy(resample(normalise_points(points), self.num_points))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, N, 3]`` -> ``[B, 1, dim]``."""
        if batch.ndim != 3 or batch.shape[-1] != 3:
            raise ValueError(f"pointnet: expected a batch [B, N, 3], got {list(batch.shape)}")
        weight = self.network.head.weight
        return self.network(batch.to(device=weight.device, dtype=weight.dtype)).unsqueeze(1)


def build_pointnet_encoder(source: str, shared: Any = None, **options: Any) -> PointNetEncoder:
    """The ``pointnet`` backend's ``build``; ``shared`` is unused (the network is small)."""
    return PointNetEncoder.from_source(source, **options)
