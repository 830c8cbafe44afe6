"""3D media: point clouds in, triangle meshes out, and the files they live in.

`load_3d` reads the vertex positions of a PLY (ASCII, binary little- or big-endian), OBJ
(``v x y z`` lines) or NPY (an ``[N, 3]`` array) file into a `PointCloud`, centred on its
centroid and scaled into the unit sphere. Every kind of bad input (missing, empty, truncated or
garbled file, content that is not what the suffix says, a wrong array shape, no points,
non-finite coordinates, a folder or an unreadable file) is a `nextgpt.errors.MediaError` naming the file.

`save_3d` writes a `Mesh` (vertices, triangles, optional vertex colours) or a `PointCloud` as an
ASCII PLY file, the format MeshLab, Blender, Open3D and trimesh all read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from nextgpt.errors import MediaError
from nextgpt.files import check_media_file

EXTENSIONS: tuple[str, ...] = (".ply", ".obj", ".npy")
"""Suffixes `load_3d` accepts (lower case)."""


@dataclass
class PointCloud:
    """A set of 3D points.

    Args:
        points: ``float32 [N, 3]`` positions.
    """

    points: np.ndarray

    def __post_init__(self) -> None:
        self.points = np.ascontiguousarray(self.points, dtype=np.float32)
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"PointCloud.points must be [N, 3], got {list(self.points.shape)}")

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def __repr__(self) -> str:
        return f"PointCloud({len(self)} points)"


@dataclass
class Mesh:
    """A triangle mesh, as the decoder produces it.

    Args:
        vertices: ``float32 [V, 3]`` positions.
        faces: ``int64 [F, 3]`` vertex indices of each triangle, counter-clockwise seen from
            outside.
        colors: optional ``float32 [V, 3]`` vertex colours in ``[0, 1]``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64).reshape(-1, 3)
        if self.colors is not None:
            self.colors = np.ascontiguousarray(self.colors, dtype=np.float32).reshape(-1, 3)
            if len(self.colors) != len(self.vertices):
                raise ValueError(f"Mesh has {len(self.vertices)} vertices but {len(self.colors)} colours")
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError(f"Mesh faces index outside 0..{len(self.vertices) - 1}")

    def __repr__(self) -> str:
        colours = ", coloured" if self.colors is not None else ""
        return f"Mesh({len(self.vertices)} vertices, {len(self.faces)} faces{colours})"

    def to_point_cloud(self) -> PointCloud:
        """The mesh's vertices as a point cloud."""
        return PointCloud(self.vertices)


def normalise_points(points: np.ndarray) -> np.ndarray:
    """Centre ``[N, 3]`` points on their centroid and scale them so the farthest lies on the unit
    sphere (PointNet's normalisation). A cloud of coincident points is only centred."""
    points = np.asarray(points, dtype=np.float64)
    centred = points - points.mean(axis=0, keepdims=True)
    radius = float(np.sqrt((centred**2).sum(axis=1)).max()) if len(centred) else 0.0
    if radius > 0:
        centred = centred / radius
    return centred.astype(np.float32)


# ----- reading ---------------------------------------------------------------------------------

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


@dataclass
class _Element:
    name: str
    count: int
    properties: list[tuple[str, str, str | None]] = field(default_factory=list)
    """``(name, value type, list count type or None)``."""


def _parse_ply_header(path: Path, data: bytes) -> tuple[str, list[_Element], int]:
    """``(format, elements, offset of the body)`` of a PLY file."""
    if not data.startswith(b"ply"):
        raise MediaError(path, "not a PLY file (it does not start with 'ply')")
    match = re.search(rb"end_header[ \t]*\r?\n", data)
    if match is None:
        raise MediaError(path, "truncated or garbled PLY header (no 'end_header' line)")
    try:
        lines = data[: match.start()].decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise MediaError(path, "garbled PLY header (not ASCII)") from None
    fmt = None
    elements: list[_Element] = []
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
                if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
                    raise ValueError(f"unknown format {fmt!r}")
            elif words[0] == "element":
                elements.append(_Element(words[1], int(words[2])))
                if elements[-1].count < 0:
                    raise ValueError("negative element count")
            elif words[0] == "property":
                if not elements:
                    raise ValueError("property before any element")
                if words[1] == "list":
                    count_type, value_type, name = (
                        _PLY_TYPES[words[2]],
                        _PLY_TYPES[words[3]],
                        words[4],
                    )
                    elements[-1].properties.append((name, value_type, count_type))
                else:
                    elements[-1].properties.append((words[2], _PLY_TYPES[words[1]], None))
            else:
                raise ValueError(f"unknown keyword {words[0]!r}")
        except (IndexError, KeyError, ValueError) as exc:
            raise MediaError(path, f"garbled PLY header, line {number} {line!r}: {exc}") from None
    if fmt is None:
        raise MediaError(path, "garbled PLY header (no 'format' line)")
    return fmt, elements, match.end()


def _vertex_columns(path: Path, element: _Element) -> list[int]:
    names = [p[0] for p in element.properties]
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise MediaError(path, f"PLY vertex element has no {'/'.join(missing)} property")
    for axis in "xyz":
        if element.properties[names.index(axis)][2] is not None:
            raise MediaError(path, f"PLY vertex property {axis!r} is a list")
    return [names.index(axis) for axis in "xyz"]


def _numeric(words: list[str]) -> bool:
    try:
        [float(word) for word in words]
    except ValueError:
        return False
    return True


def _read_ply_ascii(path: Path, body: bytes, elements: list[_Element]) -> np.ndarray:
    lines = [line for line in body.decode("ascii", errors="replace").splitlines() if line.strip()]
    cursor = 0
    for element in elements:
        rows = lines[cursor : cursor + element.count]
        if element.name != "vertex":
            if len(rows) < element.count:
                raise MediaError(
                    path,
                    f"truncated PLY: element {element.name!r} has {len(rows)} of {element.count} rows",
                )
            cursor += element.count
            continue
        if len(rows) < element.count:
            raise MediaError(path, f"truncated PLY: {len(rows)} of {element.count} vertices")
        columns = _vertex_columns(path, element)
        if any(p[2] is not None for p in element.properties):
            raise MediaError(path, "PLY vertex element with list properties is not supported")
        width = len(element.properties)
        table = [row.split() for row in rows]
        for index, words in enumerate(table):
            if len(words) != width:
                raise MediaError(path, f"garbled PLY: vertex {index} has {len(words)} values, expected {width}")
        try:
            points = np.asarray(table, dtype=np.float64).reshape(len(table), width)[:, columns]
        except ValueError:
            index = next(i for i, words in enumerate(table) if not _numeric(words))
            raise MediaError(
                path, f"garbled PLY: vertex {index} is not numeric: {rows[index].strip()[:60]!r}"
            ) from None
        return points
    raise MediaError(path, "PLY file has no 'vertex' element")


def _read_ply_binary(path: Path, body: bytes, elements: list[_Element], order: str) -> np.ndarray:
    offset = 0
    for element in elements:
        if all(p[2] is None for p in element.properties):
            dtype = np.dtype([(f"p{i}", order + p[1]) for i, p in enumerate(element.properties)])
            size = dtype.itemsize * element.count
            if offset + size > len(body):
                raise MediaError(
                    path,
                    f"truncated PLY: element {element.name!r} needs {size} bytes, {max(len(body) - offset, 0)} left",
                )
            if element.name == "vertex":
                columns = _vertex_columns(path, element)
                rows = np.frombuffer(body, dtype=dtype, count=element.count, offset=offset)
                return np.stack([rows[f"p{c}"].astype(np.float64) for c in columns], axis=1)
            offset += size
            continue
        if element.name == "vertex":
            raise MediaError(path, "PLY vertex element with list properties is not supported")
        for _ in range(element.count):  # an element with lists (faces) before the vertices
            for _, value_type, count_type in element.properties:
                if count_type is None:
                    offset += np.dtype(value_type).itemsize
                    continue
                count_dtype = np.dtype(order + count_type)
                if offset + count_dtype.itemsize > len(body):
                    raise MediaError(path, f"truncated PLY: element {element.name!r} ends early")
                n = int(np.frombuffer(body, dtype=count_dtype, count=1, offset=offset)[0])
                offset += count_dtype.itemsize + n * np.dtype(value_type).itemsize
        if offset > len(body):
            raise MediaError(path, f"truncated PLY: element {element.name!r} ends early")
    raise MediaError(path, "PLY file has no 'vertex' element")


def _read_ply(path: Path, data: bytes) -> np.ndarray:
    fmt, elements, start = _parse_ply_header(path, data)
    body = data[start:]
    if fmt == "ascii":
        return _read_ply_ascii(path, body, elements)
    return _read_ply_binary(path, body, elements, "<" if fmt == "binary_little_endian" else ">")


def _read_obj(path: Path, data: bytes) -> np.ndarray:
    if b"\x00" in data:
        raise MediaError(path, "not a text OBJ file (binary content)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MediaError(path, "not a text OBJ file (not UTF-8)") from None
    points = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0] != "v":
            continue
        try:
            if len(words) < 4:
                raise ValueError
            points.append([float(w) for w in words[1:4]])
        except ValueError:
            raise MediaError(path, f"garbled OBJ vertex on line {number}: {line.strip()[:60]!r}") from None
    if not points:
        raise MediaError(path, "OBJ file has no vertex ('v x y z') lines")
    return np.asarray(points, dtype=np.float64)


def _read_npy(path: Path, data: bytes) -> np.ndarray:
    if not data.startswith(b"\x93NUMPY"):
        raise MediaError(path, "not a NumPy .npy file (no NPY magic)")
    try:
        with path.open("rb") as handle:
            array = np.load(handle, allow_pickle=False)
    except Exception as exc:  # truncated data, bad header, pickled objects...
        raise MediaError(path, f"truncated or garbled .npy file: {exc}") from None
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise MediaError(path, f"expected a numeric array, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[1] != 3:
        raise MediaError(path, f"expected an array of shape [N, 3], got {list(array.shape)}")
    return array.astype(np.float64)


_READERS = {".ply": _read_ply, ".obj": _read_obj, ".npy": _read_npy}


def load_3d(path: str | Path) -> PointCloud:
    """Read a 3D file's points, centred on their centroid and scaled into the unit sphere.

    Args:
        path: a ``.ply`` (ASCII or binary; the ``vertex`` element's x/y/z), ``.obj`` (``v``
            lines) or ``.npy`` (``[N, 3]`` numeric array) file.

    Raises:
        MediaError: naming the file, when it is missing or empty, truncated or garbled, when its
            content is not what its suffix says, when the array has another shape than
            ``[N, 3]``, when it holds no points or non-finite coordinates, or when the suffix is
            not one of `EXTENSIONS`.
    """
    path = Path(path)
    check_media_file(path, EXTENSIONS, "3D")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(path, f"cannot read: {exc.strerror or exc}") from exc
    points = _READERS[path.suffix.lower()](path, data)
    if len(points) == 0:
        raise MediaError(path, "no points (zero vertices)")
    if not np.isfinite(points).all():
        raise MediaError(path, "coordinates include NaN or infinity")
    return PointCloud(normalise_points(points))


# ----- writing ---------------------------------------------------------------------------------


def save_3d(item: Mesh | PointCloud | Any, path: str | Path) -> Path:
    """Write a mesh (vertices, triangles, vertex colours if any) or a point cloud as ASCII PLY.

    Args:
        item: a `Mesh`, a `PointCloud`, or a ``[N, 3]`` array of points.
        path: destination; a missing suffix becomes ``.ply``; parent folders are created.

    Returns:
        The path written.

    Raises:
        MediaError: when ``path`` has another suffix than ``.ply`` or ``item`` is not 3D data.
    """
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".ply")
    if path.suffix.lower() != ".ply":
        raise MediaError(path, "3D outputs are saved as PLY; use a .ply suffix")
    if isinstance(item, np.ndarray):
        try:
            item = PointCloud(item)
        except ValueError as exc:
            raise MediaError(path, str(exc)) from None
    if isinstance(item, PointCloud):
        item = Mesh(item.points, np.zeros((0, 3), dtype=np.int64))
    if not isinstance(item, Mesh):
        raise MediaError(path, f"expected a Mesh or a PointCloud, got {type(item).__name__}")
    header = [
        "ply",
        "format ascii 1.0",
        "comment written by nextgpt-3d",
        f"element vertex {len(item.vertices)}",
    ]
    header += ["property float x", "property float y", "property float z"]
    if item.colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [
        f"element face {len(item.faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    lines = header
    if item.colors is not None:
        rgb = np.round(np.clip(item.colors, 0.0, 1.0) * 255).astype(np.uint8)
        lines += [
            f"{x:.7g} {y:.7g} {z:.7g} {r} {g} {b}"
            for (x, y, z), (r, g, b) in zip(item.vertices.tolist(), rgb.tolist(), strict=True)
        ]
    else:
        lines += [f"{x:.7g} {y:.7g} {z:.7g}" for x, y, z in item.vertices.tolist()]
    lines += [f"3 {a} {b} {c}" for a, b, c in item.faces.tolist()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path
