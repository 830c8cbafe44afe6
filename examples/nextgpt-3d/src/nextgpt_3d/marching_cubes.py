"""The marching-cubes look-up table in the layout of diffusers' Shap-E ``MeshDecoder``.

``diffusers.pipelines.shap_e.renderer.MeshDecoder`` holds its table as two buffers,
``cases [256, 5, 3]`` (edge indices of up to five triangles per cube configuration) and
``masks [256, 5]`` (which of the five are used), zero-initialised: the released ``openai/shap-e``
weights carry the real table. A pipeline built from configs (the tiny one) needs it too, so it is
computed here rather than copied.

Conventions (those of ``MeshDecoder.forward``): corner ``c`` of a cube sits at
``(c & 1, c >> 1 & 1, c >> 2 & 1)`` and is bit ``c`` of the case index, set where the field is
positive (inside). Edges 0-3 run along x at ``(y, z) = (k & 1, k >> 1)``, edges 4-7 along y at
``(x, z)``, edges 8-11 along z at ``(x, y)``.

Each case is built from the cube's faces: on every face the crossed edges are paired (on a face
whose diagonal corners are both inside, the inside corners are kept apart, a rule that depends
only on the face's own corners, so neighbouring cubes agree and the surface is closed); the pairs
chain into closed polygons, each fanned into triangles wound counter-clockwise seen from outside.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_TRIANGLES = 5
"""Triangles per cube the Shap-E buffers have room for."""


def _corner(c: int) -> np.ndarray:
    return np.array([c & 1, (c >> 1) & 1, (c >> 2) & 1], dtype=np.float64)


def _edges() -> list[tuple[int, int]]:
    """The two corners of each of the 12 edges, in Shap-E's edge order."""
    edges = []
    for k in range(4):  # along x, at (y, z) = (k & 1, k >> 1)
        base = ((k & 1) << 1) | ((k >> 1) << 2)
        edges.append((base, base | 1))
    for k in range(4):  # along y, at (x, z)
        base = (k & 1) | ((k >> 1) << 2)
        edges.append((base, base | 2))
    for k in range(4):  # along z, at (x, y)
        base = (k & 1) | ((k >> 1) << 1)
        edges.append((base, base | 4))
    return edges


EDGES = _edges()

# The six faces, each as its four corners in cyclic order.
FACES = [
    (0, 2, 6, 4),
    (1, 3, 7, 5),  # x = 0, x = 1
    (0, 1, 5, 4),
    (2, 3, 7, 6),  # y = 0, y = 1
    (0, 1, 3, 2),
    (4, 5, 7, 6),  # z = 0, z = 1
]


def _edge_index(a: int, b: int) -> int:
    return EDGES.index((min(a, b), max(a, b)))


def _face_segments(case: int, face: tuple[int, int, int, int]) -> list[tuple[int, int]]:
    inside = [bool(case >> c & 1) for c in face]
    sides = [(face[i], face[(i + 1) % 4]) for i in range(4)]
    crossed = [i for i, (a, b) in enumerate(sides) if inside[face.index(a)] != inside[face.index(b)]]
    if len(crossed) == 2:
        return [(_edge_index(*sides[crossed[0]]), _edge_index(*sides[crossed[1]]))]
    if len(crossed) == 4:  # diagonal corners inside: cut each inside corner off on its own
        segments = []
        for i in range(4):
            if inside[i]:
                before, after = sides[(i - 1) % 4], sides[i]
                segments.append((_edge_index(*before), _edge_index(*after)))
        return segments
    return []


def _polygons(case: int) -> list[list[int]]:
    neighbours: dict[int, list[int]] = {}
    for face in FACES:
        for a, b in _face_segments(case, face):
            neighbours.setdefault(a, []).append(b)
            neighbours.setdefault(b, []).append(a)
    polygons, seen = [], set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        loop, previous, current = [start], None, start
        seen.add(start)
        while True:
            options = [n for n in neighbours[current] if n != previous]
            following = options[0]
            if following == start:
                break
            loop.append(following)
            seen.add(following)
            previous, current = current, following
        polygons.append(loop)
    return polygons


def _oriented(case: int, loop: list[int]) -> list[int]:
    """``loop`` wound so that its normal points from the inside corners to the outside ones."""
    points = [(_corner(EDGES[e][0]) + _corner(EDGES[e][1])) / 2 for e in loop]
    normal = np.zeros(3)
    for i, p in enumerate(points):  # Newell's method
        q = points[(i + 1) % len(points)]
        normal += np.cross(p, q)
    outward = np.zeros(3)
    for e in loop:
        a, b = EDGES[e]
        outward += (_corner(b) - _corner(a)) * (1 if case >> a & 1 else -1)
    return loop if float(normal @ outward) > 0 else loop[::-1]


def triangle_table() -> tuple[torch.Tensor, torch.Tensor]:
    """``(cases [256, 5, 3] long, masks [256, 5] bool)`` for ``MeshDecoder``'s buffers."""
    cases = torch.zeros(256, MAX_TRIANGLES, 3, dtype=torch.long)
    masks = torch.zeros(256, MAX_TRIANGLES, dtype=torch.bool)
    for case in range(256):
        triangles = []
        for loop in _polygons(case):
            loop = _oriented(case, loop)
            triangles += [(loop[0], loop[i], loop[i + 1]) for i in range(1, len(loop) - 1)]
        if len(triangles) > MAX_TRIANGLES:
            raise AssertionError(f"case {case} needs {len(triangles)} triangles")
        for t, triangle in enumerate(triangles):
            cases[case, t] = torch.tensor(triangle)
            masks[case, t] = True
    return cases, masks
