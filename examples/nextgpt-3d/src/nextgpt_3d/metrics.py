"""Quality metrics for generated 3D shapes, registered through ``register_metrics``.

Both compare the set of generated shapes with the set of reference shapes by the Chamfer
distance, as in the point-cloud generation literature (Achlioptas et al., 2018):

* ``mmd_cd`` — minimum matching distance: for each reference, the Chamfer distance to its
  closest generated shape, averaged; lower is better (fidelity).
* ``cov_cd`` — coverage: the fraction of references that are the closest reference of at least
  one generated shape; higher is better (diversity).

Every shape is centred and scaled into the unit sphere, then reduced to ``chamfer_points``
points (default 1024): meshes by area-weighted sampling of their triangles, point clouds by
resampling, both with a fixed seed, so scores are reproducible. The Chamfer distance is the mean
squared distance to the nearest point, summed over both directions. Options (others are
ignored): ``device``, ``chamfer_points``. No weights are needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from nextgpt_3d.media import Mesh, PointCloud, normalise_points

DEFAULT_POINTS = 1024


def shape_points(item: Mesh | PointCloud | np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` points of a shape, in the unit sphere: a mesh's surface (area-weighted) or a
    cloud's points, drawn with a fixed seed. Raises ``ValueError`` for an empty shape."""
    from nextgpt_3d.encoder import resample

    rng = np.random.default_rng(seed)
    if isinstance(item, Mesh) and len(item.faces):
        triangles = item.vertices[item.faces].astype(np.float64)  # [F, 3, 3]
        areas = 0.5 * np.linalg.norm(
            np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=1
        )
        if areas.sum() > 0:
            chosen = rng.choice(len(triangles), count, p=areas / areas.sum())
            u, v = rng.random((2, count, 1))
            flip = (u + v) > 1
            u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
            t = triangles[chosen]
            points = t[:, 0] + u * (t[:, 1] - t[:, 0]) + v * (t[:, 2] - t[:, 0])
            return normalise_points(points)
    if isinstance(item, Mesh):
        raw = item.vertices
    elif isinstance(item, PointCloud):
        raw = item.points
    else:
        raw = np.asarray(item, dtype=np.float32)
    if raw.ndim != 2 or raw.shape[-1] != 3 or len(raw) == 0:
        raise ValueError(f"cannot score an empty or malformed 3D shape {item!r}")
    return resample(normalise_points(raw), count, seed)


def chamfer_matrix(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Chamfer distances ``[A, B]`` between point sets ``[A, N, 3]`` and ``[B, M, 3]``."""
    rows = []
    for shape in first:
        squared = torch.cdist(shape.expand(len(second), -1, -1), second) ** 2  # [B, N, M]
        rows.append(squared.min(dim=2).values.mean(dim=1) + squared.min(dim=1).values.mean(dim=1))
    return torch.stack(rows)


class _ChamferSetMetric:
    """Collects generated and reference shapes as point sets; ``compute`` compares the sets."""

    def __init__(self, chamfer_points: int = DEFAULT_POINTS, device: str = "cpu", **_: Any) -> None:
        self.count = int(chamfer_points)
        self.device = torch.device(device)
        self.generated: list[np.ndarray] = []
        self.references: list[np.ndarray] = []

    def update(self, generated: Sequence[Any], references: Sequence[Any], captions: Sequence[str]) -> None:
        """Add generated shapes (empty meshes are skipped: they have no surface to compare)
        and reference shapes (meshes or point clouds)."""
        for item in generated:
            if isinstance(item, Mesh) and len(item.vertices) == 0:
                continue
            self.generated.append(shape_points(item, self.count))
        self.references += [shape_points(item, self.count) for item in references]

    def _distances(self) -> torch.Tensor:
        if not self.generated or not self.references:
            raise ValueError(
                f"{type(self).__name__} needs generated and reference shapes "
                f"(got {len(self.generated)} and {len(self.references)})"
            )
        gen = torch.from_numpy(np.stack(self.generated)).to(self.device)
        ref = torch.from_numpy(np.stack(self.references)).to(self.device)
        with torch.no_grad():
            return chamfer_matrix(ref, gen)  # [R, G]


class MinimumMatchingDistance(_ChamferSetMetric):
    """``mmd_cd``: mean over references of the Chamfer distance to the closest generated shape."""

    def compute(self) -> float:
        return float(self._distances().min(dim=1).values.mean())


class Coverage(_ChamferSetMetric):
    """``cov_cd``: fraction of references that some generated shape has as its closest one."""

    def compute(self) -> float:
        distances = self._distances()
        matched = distances.argmin(dim=0).unique()
        return float(len(matched) / distances.shape[0])
