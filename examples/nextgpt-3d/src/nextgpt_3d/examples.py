"""A synthetic example point cloud: evenly spread points on the unit sphere (no file, no RNG)."""

from __future__ import annotations

import numpy as np

from nextgpt_3d.media import PointCloud


def example_point_cloud(num_points: int = 512) -> PointCloud:
    """``num_points`` points of a Fibonacci lattice on the unit sphere, the same on every call.

    Args:
        num_points: how many points (at least 1).
    """
    index = np.arange(num_points, dtype=np.float64) + 0.5
    z = 1.0 - 2.0 * index / num_points
    radius = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    theta = np.pi * (3.0 - np.sqrt(5.0)) * index
    return PointCloud(np.stack([radius * np.cos(theta), radius * np.sin(theta), z], axis=1))
