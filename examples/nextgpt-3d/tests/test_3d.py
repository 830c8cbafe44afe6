"""nextgpt-3d: media I/O, the PointNet encoder, the Shap-E decoder, registration through the
real entry point and a chat turn that answers with a mesh file. CPU, tiny random weights."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from nextgpt.conditions import ConditionSpec
from nextgpt.config import DecodeOptions
from nextgpt.errors import ConfigError, MediaError, NextGPTError
from nextgpt.licences import APACHE_2
from nextgpt.testing import DecoderBackendTests, ModalityPluginTests, random_condition
from nextgpt_3d import SPEC, ThreeDConfig, example_point_cloud
from nextgpt_3d.media import Mesh, PointCloud, load_3d, normalise_points, save_3d

# A box off the origin: 8 corners + 4 extra points, so centring and scaling are visible.
RAW = np.array(
    [[x, y, z] for x in (1.0, 3.0) for y in (-2.0, 2.0) for z in (10.0, 11.0)]
    + [[2.0, 0.0, 10.5], [1.5, 1.0, 10.2], [2.5, -1.0, 10.8], [2.0, 0.5, 10.1]],
    dtype=np.float64,
)
EXPECTED = normalise_points(RAW)


# ----- writers for test files ------------------------------------------------------------------


def ply_ascii(points: np.ndarray, extra_header: str = "", faces: str = "") -> bytes:
    lines = [
        "ply",
        "format ascii 1.0",
        "comment test",
        f"element vertex {len(points)}",
        "property float x",
        "property float y",
        "property float z",
        "property uchar red",
    ]
    lines += [extra_header] if extra_header else []
    lines += ["end_header"] + [f"{x} {y} {z} 7" for x, y, z in points]
    return ("\n".join(lines) + "\n" + faces).encode()


def ply_binary(points: np.ndarray, order: str = "<", faces_first: bool = False) -> bytes:
    name = "binary_little_endian" if order == "<" else "binary_big_endian"
    header = ["ply", f"format {name} 1.0"]
    face_body = b""
    if faces_first:
        header += ["element face 2", "property list uchar int vertex_indices"]
        for tri in ((0, 1, 2), (1, 2, 3)):
            face_body += np.array([3], dtype="u1").tobytes() + np.array(tri, dtype=order + "i4").tobytes()
    header += [
        f"element vertex {len(points)}",
        "property double x",
        "property float nx",
        "property double y",
        "property double z",
    ]
    header += [] if faces_first else ["element face 0", "property list uchar int vertex_indices"]
    dtype = np.dtype([("x", order + "f8"), ("nx", order + "f4"), ("y", order + "f8"), ("z", order + "f8")])
    rows = np.zeros(len(points), dtype=dtype)
    rows["x"], rows["y"], rows["z"] = points[:, 0], points[:, 1], points[:, 2]
    return ("\n".join(header) + "\nend_header\n").encode() + face_body + rows.tobytes()


def obj_text(points: np.ndarray) -> bytes:
    body = ["# test", "o box"] + [f"v {x} {y} {z}" for x, y, z in points] + ["vn 0 0 1", "f 1 2 3"]
    return ("\n".join(body) + "\n").encode()


def npy_bytes(array: np.ndarray, tmp_path: Path) -> bytes:
    scratch = tmp_path / "scratch.npy"
    np.save(scratch, array)
    data = scratch.read_bytes()
    scratch.unlink()
    return data


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_ply_faces(path: Path) -> list[list[int]]:
    """Faces of an ASCII PLY written by save_3d (an independent reader for the check)."""
    text = path.read_text().splitlines()
    n_vertices = int(next(line for line in text if line.startswith("element vertex")).split()[-1])
    n_faces = int(next(line for line in text if line.startswith("element face")).split()[-1])
    body = text[text.index("end_header") + 1 :]
    rows = [list(map(int, line.split())) for line in body[n_vertices : n_vertices + n_faces]]
    assert all(row[0] == 3 and len(row) == 4 for row in rows)
    return [row[1:] for row in rows]


# ----- loading -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, make",
    [
        ("box.ply", lambda tmp: ply_ascii(RAW)),
        ("box_le.ply", lambda tmp: ply_binary(RAW, "<")),
        ("box_be.ply", lambda tmp: ply_binary(RAW, ">")),
        ("box_faces_first.ply", lambda tmp: ply_binary(RAW, "<", faces_first=True)),
        ("box.obj", lambda tmp: obj_text(RAW)),
        ("box.npy", lambda tmp: npy_bytes(RAW.astype(np.float32), tmp)),
        ("box_int.npy", lambda tmp: npy_bytes((RAW * 10).astype(np.int32), tmp)),
        ("BOX.PLY", lambda tmp: ply_ascii(RAW, faces="3 0 1 2\n")),
    ],
)
def test_load_formats_centred_and_scaled(tmp_path, name, make):
    cloud = load_3d(write(tmp_path, name, make(tmp_path)))
    assert isinstance(cloud, PointCloud) and cloud.points.dtype == np.float32
    assert cloud.points.shape == (len(RAW), 3)
    np.testing.assert_allclose(cloud.points, EXPECTED, atol=1e-5)
    np.testing.assert_allclose(cloud.points.mean(axis=0), 0.0, atol=1e-6)
    assert np.linalg.norm(cloud.points, axis=1).max() == pytest.approx(1.0, abs=1e-6)


def test_normalise_points_keeps_shape_and_handles_a_single_point():
    points = normalise_points(RAW)
    np.testing.assert_allclose(points * np.linalg.norm(RAW - RAW.mean(0), axis=1).max() + RAW.mean(0), RAW, atol=1e-5)
    np.testing.assert_array_equal(normalise_points(np.array([[5.0, 5.0, 5.0]] * 3)), np.zeros((3, 3)))


def _bad_cases():
    good_ascii = ply_ascii(RAW)
    good_binary = ply_binary(RAW)
    return [
        ("empty.ply", lambda tmp: b"", "empty"),
        ("cut.ply", lambda tmp: good_binary[:-20], "truncated"),
        ("cut_header.ply", lambda tmp: good_ascii[:40], "end_header"),
        ("short.ply", lambda tmp: good_ascii.rsplit(b"\n", 4)[0], "truncated"),
        (
            "letters.ply",
            lambda tmp: good_ascii.replace(b"3.0 2.0 11.0", b"3.0 abc 11.0"),
            "not numeric",
        ),
        ("columns.ply", lambda tmp: good_ascii.replace(b"3.0 2.0 11.0 7", b"3.0 2.0"), "values"),
        (
            "header.ply",
            lambda tmp: good_ascii.replace(b"property float y", b"property quad y"),
            "header",
        ),
        ("no_z.ply", lambda tmp: good_ascii.replace(b"property float z", b"property float w"), "z"),
        ("obj_inside.ply", lambda tmp: obj_text(RAW), "not a PLY"),
        ("zero.ply", lambda tmp: ply_ascii(RAW[:0]), "no points"),
        ("nan.ply", lambda tmp: good_ascii.replace(b"3.0 2.0 11.0", b"3.0 nan 11.0"), "NaN"),
        ("npy_inside.obj", lambda tmp: npy_bytes(RAW, tmp), "not a text OBJ"),
        ("ply_inside.obj", lambda tmp: good_ascii, "no vertex"),
        ("garbled.obj", lambda tmp: b"v 1 2 3\nv 1 two 3\n", "line 2"),
        ("short_v.obj", lambda tmp: b"v 1 2\n", "line 1"),
        ("text.npy", lambda tmp: b"0.1 0.2 0.3\n", "NPY magic"),
        ("cut.npy", lambda tmp: npy_bytes(RAW, tmp)[:-16], "truncated"),
        ("flat.npy", lambda tmp: npy_bytes(RAW[:, :2], tmp), "[N, 3]"),
        ("deep.npy", lambda tmp: npy_bytes(RAW[:, :, None], tmp), "[N, 3]"),
        ("zero.npy", lambda tmp: npy_bytes(np.zeros((0, 3)), tmp), "no points"),
        ("strings.npy", lambda tmp: npy_bytes(np.array([["a", "b", "c"]]), tmp), "numeric"),
        (
            "objects.npy",
            lambda tmp: npy_bytes(np.array([[1, None, 3]], dtype=object), tmp),
            "garbled",
        ),
        ("cloud.xyz", lambda tmp: b"1 2 3\n", "unsupported"),
    ]


@pytest.mark.parametrize("name, make, reason", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input_is_a_media_error_naming_the_file(tmp_path, name, make, reason):
    path = write(tmp_path, name, make(tmp_path))
    with pytest.raises(MediaError) as info:
        load_3d(path)
    assert str(path) in str(info.value) and info.value.path == path
    assert reason.lower() in info.value.reason.lower()


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere" / "chair.ply"
    with pytest.raises(MediaError, match=re.escape(str(path)) + ".*not found"):
        load_3d(path)


# ----- saving ------------------------------------------------------------------------------------


def test_save_mesh_round_trip(tmp_path):
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5]], dtype=np.float32)
    path = save_3d(Mesh(vertices, faces, colors), tmp_path / "out" / "tetra")
    assert path.suffix == ".ply" and path.read_text().startswith("ply\nformat ascii 1.0\n")
    assert "property uchar red" in path.read_text()
    assert read_ply_faces(path) == faces.tolist()
    np.testing.assert_allclose(load_3d(path).points, normalise_points(vertices), atol=1e-6)


def test_save_point_cloud_and_array_and_empty_mesh(tmp_path):
    cloud = example_point_cloud(64)
    np.testing.assert_allclose(
        load_3d(save_3d(cloud, tmp_path / "a.ply")).points,
        normalise_points(cloud.points),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        load_3d(save_3d(cloud.points, tmp_path / "b.ply")).points,
        normalise_points(cloud.points),
        atol=1e-6,
    )
    empty = save_3d(Mesh(np.zeros((0, 3)), np.zeros((0, 3))), tmp_path / "empty.ply")
    assert "element vertex 0" in empty.read_text() and read_ply_faces(empty) == []
    with pytest.raises(MediaError, match="no points"):
        load_3d(empty)


def test_save_rejects_other_suffixes_and_non_3d_items(tmp_path):
    with pytest.raises(MediaError, match=r"mesh\.obj.*PLY"):
        save_3d(example_point_cloud(8), tmp_path / "mesh.obj")
    with pytest.raises(MediaError, match="Mesh or a PointCloud"):
        save_3d("not a mesh", tmp_path / "x.ply")
    with pytest.raises(MediaError, match=r"\[N, 3\]"):
        save_3d(np.zeros((4, 2)), tmp_path / "y.ply")


def test_example_is_deterministic_on_the_unit_sphere(tmp_path):
    first, second = example_point_cloud(), example_point_cloud()
    np.testing.assert_array_equal(first.points, second.points)
    np.testing.assert_allclose(np.linalg.norm(first.points, axis=1), 1.0, atol=1e-6)
    assert len(load_3d(SPEC.save(SPEC.example(), tmp_path / "example.ply"))) == len(first)


# ----- marching cubes ----------------------------------------------------------------------------


def test_marching_cubes_table_gives_a_closed_outward_mesh():
    from diffusers.pipelines.shap_e.renderer import MeshDecoder
    from nextgpt_3d.marching_cubes import triangle_table

    decoder = MeshDecoder()
    cases, masks = triangle_table()
    decoder.cases.copy_(cases)
    decoder.masks.copy_(masks)
    axis = torch.linspace(-1, 1, 16)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    radius = 0.6
    sphere = radius - (x**2 + y**2 + z**2).sqrt()
    noise = torch.randn(10, 10, 10, generator=torch.Generator().manual_seed(0))
    for is_sphere, field in ((True, sphere), (False, noise)):
        field = torch.nn.functional.pad(field[1:-1, 1:-1, 1:-1], (1,) * 6, value=-1.0)  # closed border
        mesh = decoder(field, torch.tensor([-1.0] * 3), torch.tensor([2.0] * 3))
        edges = Counter((a, b) for f in mesh.faces.tolist() for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])))
        # closed and consistently oriented: every directed edge once, its reverse once
        assert edges and all(n == 1 and edges[(b, a)] == 1 for (a, b), n in edges.items())
        if is_sphere:
            v = mesh.verts[mesh.faces]
            volume = float((v[:, 0] * torch.cross(v[:, 1], v[:, 2], dim=1)).sum() / 6)
            assert volume == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.05)  # > 0: normals point out


# ----- encoder -----------------------------------------------------------------------------------


def test_encoder_shapes_and_determinism(tiny_encoder):
    from nextgpt_3d.encoder import PointNetEncoder

    assert tiny_encoder.dim == 32 and tiny_encoder.licence == APACHE_2
    assert tiny_encoder.identity == "pointnet:tiny-v1"
    assert not any(p.requires_grad for p in tiny_encoder.parameters()) and not tiny_encoder.training
    cloud = PointCloud(RAW)
    x = tiny_encoder.preprocess(cloud)
    assert x.shape == (256, 3) and x.dtype == torch.float32
    torch.testing.assert_close(x, tiny_encoder.preprocess(cloud))
    assert tiny_encoder.preprocess(example_point_cloud(1000)).shape == (256, 3)
    assert tiny_encoder.preprocess(Mesh(RAW, np.zeros((0, 3)))).shape == (256, 3)
    batch = torch.stack([x, tiny_encoder.preprocess(example_point_cloud())])
    features = tiny_encoder(batch)
    assert features.shape == (2, 1, 32)
    assert not torch.allclose(features[0], features[1])
    again = PointNetEncoder.from_source("tiny")  # a second build draws the same weights
    torch.testing.assert_close(again(batch), features)
    torch.testing.assert_close(
        tiny_encoder(batch[:, torch.randperm(256)]), features, rtol=1e-5, atol=1e-6
    )  # order-free
    with pytest.raises(ValueError, match="non-empty"):
        tiny_encoder.preprocess(np.zeros((0, 3)))


def test_encoder_save_and_load_through_a_folder(tmp_path, tiny_encoder):
    from nextgpt_3d.encoder import PointNetEncoder

    folder = tmp_path / "pointnet"
    tiny_encoder.network.save_pretrained(folder)
    assert (folder / "config.json").is_file() and list(folder.glob("*.safetensors"))
    loaded = PointNetEncoder.from_source(str(folder))
    assert loaded.identity == f"pointnet:{folder.resolve()}" and loaded.dim == 32
    batch = torch.stack([tiny_encoder.preprocess(example_point_cloud())])
    torch.testing.assert_close(loaded(batch), tiny_encoder(batch))
    weights = next(folder.glob("*.safetensors"))
    torch.testing.assert_close(PointNetEncoder.from_source(str(weights))(batch), tiny_encoder(batch))
    assert PointNetEncoder.from_source(str(folder), num_points=64).preprocess(example_point_cloud()).shape == (64, 3)


def test_encoder_bad_sources(tmp_path):
    from nextgpt_3d.encoder import PointNetEncoder

    missing = tmp_path / "no-such-pointnet"
    with pytest.raises(NextGPTError, match=re.escape(str(missing)) + ".*does not exist"):
        PointNetEncoder.from_source(str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NextGPTError, match="no config.json"):
        PointNetEncoder.from_source(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="depth"):
        PointNetEncoder.from_source("tiny", depth=3)


# ----- decoder -----------------------------------------------------------------------------------


def test_decoder_condition_spec_without_loading(nextgpt_home_folder):
    from nextgpt_3d.decoder import ShapEDecoder

    decoder = ShapEDecoder("tiny")
    assert decoder.condition_spec == ConditionSpec.pooled_vector(32) and not decoder.is_loaded
    assert decoder.identity == "shap-e:tiny-v1" and decoder.licence.name == "MIT"
    assert decoder.licence.commercial_use and decoder.grid_size == 16
    assert decoder.tiny_folder().parent == nextgpt_home_folder / "tiny"


@pytest.fixture
def nextgpt_home_folder():
    from nextgpt.paths import nextgpt_home

    return nextgpt_home()


def test_condition_from_text_is_the_pipelines_own(tiny_decoder):
    from diffusers import ShapEPipeline

    captions = ["make a chair", "a small red teapot"]
    condition = tiny_decoder.condition_from_text(captions)["prompt_embeds"]
    assert condition.shape == (2, 32)
    reference = ShapEPipeline.from_pretrained(tiny_decoder.location())
    with torch.no_grad():
        expected = reference._encode_prompt(captions, torch.device("cpu"), 1, False)
    torch.testing.assert_close(condition, expected)
    torch.testing.assert_close(condition.norm(dim=-1), torch.full((2,), math.sqrt(32)))
    torch.testing.assert_close(tiny_decoder.condition_from_text("make a chair")["prompt_embeds"], condition[:1])
    negative = tiny_decoder.negative_condition()["prompt_embeds"]
    assert negative.shape == (1, 32) and not negative.any()


@pytest.mark.parametrize("guidance", [15.0, 1.0])
def test_denoise_matches_the_pipeline(tiny_decoder, guidance):
    from diffusers import ShapEPipeline

    reference = ShapEPipeline.from_pretrained(tiny_decoder.location())
    reference.set_progress_bar_config(disable=True)
    expected = reference(
        "make a chair",
        num_inference_steps=3,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(5),
        output_type="latent",
    ).images
    condition = tiny_decoder.condition_from_text(["make a chair"])
    latents = tiny_decoder.denoise(condition, DecodeOptions(steps=3, guidance=guidance, seed=5))
    assert latents.shape == (1, 32, 16)
    torch.testing.assert_close(latents, expected)


def test_generate_returns_a_mesh_deterministic_per_seed(tiny_decoder, tmp_path):
    condition = tiny_decoder.condition_from_text(["make a chair", "a lamp"])
    first = tiny_decoder.generate(condition, DecodeOptions(seed=3))
    assert len(first) == 2 and all(isinstance(m, Mesh) for m in first)
    mesh = first[0]
    assert len(mesh.vertices) > 0 and len(mesh.faces) > 0 and mesh.colors.shape == mesh.vertices.shape
    assert np.abs(mesh.vertices).max() <= 1.0 + 1e-5  # inside Shap-E's [-1, 1] box
    again = tiny_decoder.generate(condition, DecodeOptions(seed=3))
    np.testing.assert_array_equal(again[0].vertices, mesh.vertices)
    np.testing.assert_array_equal(again[0].faces, mesh.faces)
    other = tiny_decoder.generate(condition.select([0]), DecodeOptions(seed=4))[0]
    assert other.vertices.shape != mesh.vertices.shape or not np.array_equal(other.vertices, mesh.vertices)
    path = save_3d(mesh, tmp_path / "chair.ply")
    assert len(read_ply_faces(path)) == len(mesh.faces)
    assert len(load_3d(path)) == len(mesh.vertices)


def test_generate_rejects_a_wrong_condition_shape(tiny_decoder):
    with pytest.raises(ValueError, match=r"condition must be prompt_embeds \[32\]"):
        tiny_decoder.generate(random_condition(ConditionSpec.sequence(77, 32), 1))


def test_decoder_sources_and_options(tmp_path, tiny_decoder):
    from nextgpt_3d.decoder import ShapEDecoder

    folder = tmp_path / "shap-e-copy"
    tiny_decoder.pipeline.save_pretrained(folder)
    local = ShapEDecoder(str(folder), grid_size=8)
    assert local.condition_spec == tiny_decoder.condition_spec and local.grid_size == 8
    condition = tiny_decoder.condition_from_text(["make a chair"])
    torch.testing.assert_close(local.condition_from_text(["make a chair"])["prompt_embeds"], condition["prompt_embeds"])
    assert len(local.generate(condition, DecodeOptions(steps=2, seed=1))[0].faces) > 0
    with pytest.raises(NextGPTError, match="does not exist"):
        ShapEDecoder(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="frame_size"):
        ShapEDecoder("tiny", frame_size=64)
    with pytest.raises(ConfigError, match="grid_size"):
        ShapEDecoder("tiny", grid_size=1)
    assert ShapEDecoder("openai/shap-e").grid_size == 128  # a hub id: nothing is fetched yet
    # one call's own grid: decode option extra.grid_size (the constructor's is the default)
    fine = local.generate(condition, DecodeOptions(steps=2, seed=1, extra={"grid_size": 24}))[0]
    coarse = local.generate(condition, DecodeOptions(steps=2, seed=1))[0]
    assert len(fine.faces) > len(coarse.faces) > 0
    with pytest.raises(ConfigError, match="extra.frame_size: Shap-E takes only grid_size"):
        local.generate(condition, DecodeOptions(steps=2, extra={"frame_size": 64}))
    with pytest.raises(ConfigError, match="extra.grid_size must be at least 2"):
        local.generate(condition, DecodeOptions(steps=2, extra={"grid_size": 1}))


def test_tiny_pipeline_is_deterministic():
    from nextgpt_3d.decoder import ShapEDecoder

    def build():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return ShapEDecoder.build_tiny_pipeline()

    first, second = build(), build()
    for a, b in zip(first.prior.state_dict().values(), second.prior.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert first.shap_e_renderer.mesh_decoder.masks.any()


# ----- registration and chat ---------------------------------------------------------------------


def test_registered_through_the_entry_point():
    from nextgpt.plugins import load_plugins

    registry = load_plugins(allow=["3d"])
    assert not registry.errors
    info = registry.plugins["3d"]
    assert info.distribution == "nextgpt-3d" and info.version == "0.1.0"
    spec = registry.modality("3d")
    assert spec.signal_tokens.tokens == [f"[3D{i}]" for i in range(8)] and spec.signal_tokens.placeholder == "<3d>"
    assert spec.extensions == (".ply", ".obj", ".npy") and spec.output_extension == ".ply"
    assert info.encoders == ["3d:pointnet"] and info.decoders == ["3d:shap-e"]
    assert registry.decoder_backend("3d", "shap-e").licence.name == "MIT"
    assert registry.encoder_backend("3d", "pointnet").licence == APACHE_2
    config = spec.validate_config({})
    assert isinstance(config, ThreeDConfig)
    assert (config.encoder.backend, config.decoder.backend, config.decoder.source) == (
        "pointnet",
        "shap-e",
        "openai/shap-e",
    )
    with pytest.raises(ConfigError, match="modalities.3d.decoder.grid"):
        spec.validate_config({"decoder": {"backend": "shap-e", "grid": 3}})


@pytest.fixture(scope="module")
def model_3d():
    from nextgpt.model import NextGPTModel
    from nextgpt.plugins import load_plugins

    return NextGPTModel.from_pretrained("tiny", registry=load_plugins(allow=["image", "3d"]), modalities=["3d"])


def test_chat_turn_answers_with_a_mesh_file(model_3d, tmp_path):
    source = save_3d(example_point_cloud(300), tmp_path / "in" / "chair.ply")
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "3d", "path": str(source)},
                {"type": "text", "text": "make a chair"},
            ],
        }
    ]
    answer = model_3d.generate(messages, output_dir=tmp_path / "out", request=["3d"])
    assert [m.modality for m in answer.media] == ["3d"]
    item = answer.media[0]
    assert isinstance(item.media, Mesh) and len(item.media.faces) > 0
    assert item.path == tmp_path / "out" / "3d_0.ply" and item.path.is_file()
    assert len(read_ply_faces(item.path)) == len(item.media.faces)
    assert len(load_3d(item.path)) == len(item.media.vertices)
    assert answer.as_message()["content"][-1] == {"type": "3d", "path": str(item.path)}
    assert model_3d.decoders["3d"].condition_spec == ConditionSpec.pooled_vector(32)
    assert {role: str(licence) for role, licence in model_3d.licences().items()} == {
        "llm (tiny)": "random weights (no licence needed)",
        "3d encoder (pointnet)": "Apache-2.0",
        "3d decoder (shap-e)": "MIT",
    }
    again = model_3d.generate(messages, output_dir=tmp_path / "again", request=["3d"])
    np.testing.assert_array_equal(again.media[0].media.vertices, item.media.vertices)


def test_chat_turn_names_a_bad_3d_file(model_3d, tmp_path):
    bad = write(tmp_path, "broken.ply", b"ply\nformat ascii 1.0\nelement vertex 3\n")
    with pytest.raises(MediaError, match=re.escape(str(bad))):
        model_3d.generate([{"role": "user", "content": [{"type": "3d", "path": str(bad)}]}], request=["3d"])


# ----- metrics -----------------------------------------------------------------------------------


def test_metrics_registered_and_scored():
    from nextgpt.plugins import load_plugins
    from nextgpt_3d.metrics import shape_points

    registry = load_plugins(allow=["3d"])
    backends = {m.name: m for m in registry.metrics_for("3d")}
    assert set(backends) == {"mmd_cd", "cov_cd"}
    assert not backends["mmd_cd"].higher_is_better and backends["cov_cd"].higher_is_better
    assert all(b.needs_references for b in backends.values())
    sphere = example_point_cloud(400)
    flat = PointCloud(sphere.points * np.array([1.0, 1.0, 0.2], dtype=np.float32))
    tetra = Mesh(np.eye(4, 3), np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]))
    surface = shape_points(tetra, 256)
    assert surface.shape == (256, 3) and np.array_equal(surface, shape_points(tetra, 256))

    def score(name, generated, references):
        metric = backends[name].build(device="cpu", chamfer_points=256, clip_model="not mine")
        metric.update(generated, references, ["a caption"] * len(generated))
        return metric.compute()

    assert score("mmd_cd", [sphere, flat], [sphere]) == pytest.approx(0.0, abs=1e-6)
    assert score("mmd_cd", [flat, tetra], [sphere]) > 0.01
    assert score("cov_cd", [sphere, sphere], [sphere, flat]) == 0.5
    assert score("cov_cd", [flat, sphere, Mesh(np.zeros((0, 3)), np.zeros((0, 3)))], [sphere, flat]) == 1.0
    with pytest.raises(ValueError, match="needs generated and reference"):
        score("mmd_cd", [sphere], [])


# ----- the nextgpt conformance kit ---------------------------------------------------------------


class Test3DPluginConformance(ModalityPluginTests):
    modality = "3d"
    plugins = ("3d",)

    def assert_same_media(self, original, reloaded):
        np.testing.assert_allclose(reloaded.points, normalise_points(original.points), atol=1e-6)


class TestShapEBackendConformance(DecoderBackendTests):
    """Shap-E runs its own denoising loop and offers no denoising loss: the kit checks both."""

    modality, backend, plugins = "3d", "shap-e", ("3d",)
    build_options = {"grid_size": 8}


def test_a_field_without_surface_gives_an_empty_mesh(tmp_path):
    from nextgpt_3d.decoder import ShapEDecoder

    decoder = ShapEDecoder("tiny")  # its own pipeline: the session's stays untouched
    last = decoder.pipeline.shap_e_renderer.mlp.mlp[-1]  # not overwritten by the latent
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-5.0)  # signed distance < 0 everywhere: all outside
    mesh = decoder.generate(decoder.condition_from_text(["nothing"]), DecodeOptions(seed=0))[0]
    assert mesh.vertices.shape == (0, 3) and mesh.faces.shape == (0, 3)
    assert "element face 0" in save_3d(mesh, tmp_path / "nothing.ply").read_text()
