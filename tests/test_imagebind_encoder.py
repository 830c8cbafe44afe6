"""The ImageBind encoder backend with the tiny random model (CPU, offline).

Shapes, one shared backbone for image/audio/video, freezing, the state-dict round trip through
a local .pth, the audio logit scale, clear errors, and fidelity of the preprocessing against
the functions of ImageBind's own data.py (read from the installed wheel; that module itself
cannot be imported here).
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import math
import sys
import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from media_fixtures import (
    image_array,
    moving_square_frames,
    sine_tone,
    write_test_audio,
    write_test_image,
    write_test_video,
)
from nextgpt.encoders import imagebind as ib
from nextgpt.encoders.imagebind import (
    CheckpointNotFoundError,
    ImageBindEncoder,
    ImageBindNotInstalledError,
    clip_starts,
    load_imagebind,
)
from nextgpt.errors import ConfigError, NextGPTError
from nextgpt.licences import IMAGEBIND
from nextgpt.shared import SharedModels
from nextgpt_audio import imagebind as audio_ib
from nextgpt_audio.imagebind import audio_to_imagebind
from nextgpt_image.imagebind import image_to_imagebind
from nextgpt_video import imagebind as video_ib
from nextgpt_video.imagebind import video_to_imagebind
from PIL import Image
from torch import nn

PAD_VALUE = (0.0 - audio_ib.FBANK_MEAN) / audio_ib.FBANK_STD  # a zero-padded fbank frame after normalising


@pytest.fixture(scope="module")
def shared() -> SharedModels:
    return SharedModels()


@pytest.fixture(scope="module")
def encoders(shared: SharedModels) -> dict[str, ImageBindEncoder]:
    """The three encoders the image, audio and video plugins build, on one SharedModels."""
    return {
        "image": ImageBindEncoder.from_shared("tiny", shared, tower="vision", preprocess=image_to_imagebind),
        "audio": ImageBindEncoder.from_shared(
            "tiny", shared, tower="audio", preprocess=lambda clip: audio_to_imagebind(*clip)
        ),
        "video": ImageBindEncoder.from_shared(
            "tiny", shared, tower="vision", preprocess=lambda clip: video_to_imagebind(*clip)
        ),
    }


# ------------------------------------------------------------------------------- the model


def test_tiny_model_is_deterministic_frozen_and_leaves_global_rng(encoders) -> None:
    before = torch.random.get_rng_state()
    again = load_imagebind("tiny")
    assert torch.equal(before, torch.random.get_rng_state())
    reference = encoders["image"].backbone
    assert again is not reference
    for (name, a), (_, b) in zip(again.state_dict().items(), reference.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert not again.training and not any(p.requires_grad for p in again.parameters())
    assert encoders["image"].dim == 32 and encoders["image"].identity == "imagebind:tiny"
    assert encoders["image"].licence == IMAGEBIND and not IMAGEBIND.commercial_use


def test_one_shared_backbone_for_three_encoders(shared: SharedModels, encoders) -> None:
    assert len(shared) == 1 and ("imagebind", "tiny", "tiny") in shared
    backbones = {id(e.backbone) for e in encoders.values()}
    assert len(backbones) == 1
    assert [e.tower for e in encoders.values()] == ["vision", "audio", "vision"]


def test_backbone_is_not_registered_in_parents(encoders) -> None:
    parent = nn.ModuleDict(dict(encoders))
    parent.add_module("projector", nn.Linear(32, 8))
    assert set(parent.state_dict()) == {"projector.weight", "projector.bias"}
    assert [name for name, _ in parent.named_parameters()] == ["projector.weight", "projector.bias"]
    parent.train()
    parent.requires_grad_(True)
    backbone = encoders["audio"].backbone
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())


def test_parent_to_moves_the_shared_backbone() -> None:
    local = SharedModels()
    encoder = ImageBindEncoder.from_shared("tiny", local, tower="vision", preprocess=image_to_imagebind)
    nn.ModuleList([encoder]).to(torch.float64)
    assert all(p.dtype == torch.float64 for p in encoder.backbone.parameters())
    features = encoder(torch.zeros(1, 3, 224, 224))  # float32 input is cast to the backbone's dtype
    assert features.dtype == torch.float64 and features.shape == (1, 1, 32)


# ----------------------------------------------------------------------------- the towers


def test_image_features(encoders, tmp_path: Path) -> None:
    encoder = encoders["image"]
    image = Image.open(write_test_image(tmp_path / "square.png")).convert("RGB")
    pixels = encoder.preprocess(image)
    assert pixels.shape == (3, 224, 224) and pixels.dtype == torch.float32
    batch = torch.stack([pixels, image_to_imagebind(Image.fromarray(image_array()[::-1].copy()))])
    features = encoder(batch)
    assert features.shape == (2, 1, 32) and not features.requires_grad
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(2, 1))  # vision: L2-normalised
    assert not torch.allclose(features[0], features[1])
    torch.testing.assert_close(features[:, 0], encoder.backbone({"vision": batch})["vision"])


@pytest.mark.parametrize("seconds", [3.0, 0.5])
def test_audio_features(encoders, seconds: float) -> None:
    clip = (sine_tone(seconds, 22050)[None, :], 22050)
    mel = encoders["audio"].preprocess(clip)
    assert mel.shape == (3, 1, 128, 204)
    if seconds < 2:  # 0.5 s: 48 fbank frames of sound, then padding; every clip identical
        assert torch.allclose(mel[:, :, :, 60:], torch.full((3, 1, 128, 144), PAD_VALUE))
        assert torch.allclose(mel[0], mel[2], atol=1e-3) and not torch.allclose(
            mel[0, 0, :, 10], torch.tensor(PAD_VALUE)
        )
    else:
        assert not torch.equal(mel[0], mel[2])
    features = encoders["audio"](mel.unsqueeze(0))
    assert features.shape == (1, 1, 32)
    # mean over clips of 20 x unit vectors: norm 20 when the clips agree, at most 20 otherwise
    norm = float(features.norm())
    assert norm == pytest.approx(20.0, rel=1e-5) if seconds < 2 else 0 < norm <= 20.0 + 1e-4


def test_audio_logit_scale_false_divides_by_20(shared: SharedModels, encoders) -> None:
    unscaled = ImageBindEncoder.from_shared(
        "tiny", shared, tower="audio", preprocess=encoders["audio"].preprocess, logit_scale=False
    )
    assert unscaled.backbone is encoders["audio"].backbone and len(shared) == 1
    assert unscaled.identity == "imagebind:tiny:unscaled"
    batch = torch.stack([audio_to_imagebind(sine_tone(2.5), 16000), audio_to_imagebind(-sine_tone(0.3), 16000)])
    scaled, plain = encoders["audio"](batch), unscaled(batch)
    torch.testing.assert_close(scaled, 20.0 * plain, rtol=1e-5, atol=1e-6)
    assert float(plain[1].norm()) == pytest.approx(1.0, rel=1e-5)
    vision = ImageBindEncoder.from_shared("tiny", shared, "vision", image_to_imagebind, logit_scale=False)
    assert vision.identity == "imagebind:tiny"  # the vision tower has no scaling to drop


@pytest.mark.parametrize("seconds", [2.0, 1.0])
def test_video_features(encoders, seconds: float) -> None:
    frames = moving_square_frames(int(seconds * 8))
    views = encoders["video"].preprocess((frames, 8.0))
    assert views.shape == (15, 3, 2, 224, 224)
    features = encoders["video"](torch.stack([views, views.flip(-1)]))
    assert features.shape == (2, 1, 32)
    assert not torch.allclose(features[0], features[1])


# ----------------------------------------------------------------- loading from a state dict


def test_state_dict_round_trip_by_path(encoders, tmp_path: Path) -> None:
    path = tmp_path / "weights" / "tiny_imagebind.pth"
    path.parent.mkdir()
    torch.save(encoders["image"].backbone.state_dict(), path)
    before = torch.random.get_rng_state()
    local = SharedModels()
    loaded = ImageBindEncoder.from_shared(str(path), local, "audio", encoders["audio"].preprocess, variant="tiny")
    assert torch.equal(before, torch.random.get_rng_state())
    assert loaded.identity == f"imagebind:tiny:{path.resolve()}" and loaded.dim == 32
    assert not loaded.backbone.training and not any(p.requires_grad for p in loaded.backbone.parameters())
    mel = audio_to_imagebind(sine_tone(1.0), 16000).unsqueeze(0)
    assert torch.equal(loaded(mel), encoders["audio"](mel))
    image = image_to_imagebind(Image.fromarray(image_array())).unsqueeze(0)
    vision = ImageBindEncoder.from_shared(str(path), local, "vision", image_to_imagebind, variant="tiny")
    assert torch.equal(vision(image), encoders["image"](image)) and len(local) == 1


def test_wrong_architecture_is_a_clear_error(encoders, tmp_path: Path) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(encoders["image"].backbone.state_dict(), path)
    with pytest.raises(ConfigError, match=r"tiny\.pth.*not an ImageBind-huge state dict.*variant"):
        load_imagebind(str(path))  # variant defaults to huge
    state = encoders["image"].backbone.state_dict()
    state.pop("modality_trunks.audio.blocks.0.attn.in_proj_weight")
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"1 missing keys \(e\.g\. modality_trunks\.audio\.blocks\.0"):
        load_imagebind(str(path), variant="tiny")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="junk.pth: not a readable PyTorch checkpoint"):
        load_imagebind(str(tmp_path / "junk.pth"), variant="tiny")
    with pytest.raises(ConfigError, match="unknown ImageBind variant 'giant'"):
        load_imagebind(str(path), variant="giant")
    with pytest.raises(ConfigError, match="no tower 'smell'"):
        ImageBindEncoder.from_shared("tiny", SharedModels(), "smell", image_to_imagebind)


def test_missing_checkpoint_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "imagebind.pth"
    with pytest.raises(CheckpointNotFoundError, match=str(missing)) as info:
        load_imagebind(str(missing), variant="tiny")
    assert isinstance(info.value, NextGPTError) and isinstance(info.value, FileNotFoundError)


def test_huge_offline_says_where_to_put_the_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXTGPT_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []

    def offline(url: str, dst: str, progress: bool = True) -> None:
        calls.append((url, dst))
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    target = tmp_path / "checkpoints" / "imagebind_huge.pth"
    with pytest.raises(CheckpointNotFoundError, match=f"copy it to {target}"):
        load_imagebind("imagebind_huge")
    assert calls == [(ib.HUGE_URL, str(target))]
    assert ib.imagebind_identity("imagebind_huge") == f"imagebind:huge:{target}"
    with pytest.raises(ConfigError, match="huge variant"):
        load_imagebind("imagebind_huge", variant="tiny")
    # with HF_HUB_OFFLINE set, no download is even tried
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls.clear()
    with pytest.raises(CheckpointNotFoundError, match=f"HF_HUB_OFFLINE is set.*copy it to {target}"):
        load_imagebind("imagebind_huge")
    assert calls == []


def test_missing_package_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "imagebind" or n.startswith("imagebind.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ImageBindNotInstalledError, match=r'pip install "nextgpt-core\[imagebind\]"'):
        load_imagebind("tiny")


# ------------------------------------------------- fidelity to ImageBind's data.py preprocessing


def _upstream_data(**shims: object) -> dict[str, object]:
    """Functions and classes of the installed imagebind/data.py, compiled without its imports."""
    from torchvision import transforms

    source = Path(importlib.util.find_spec("imagebind").submodule_search_locations[0]) / "data.py"
    tree = ast.parse(source.read_text())
    wanted = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Assign)]
    namespace: dict[str, object] = dict(torch=torch, nn=nn, math=math, logging=logging, transforms=transforms)
    namespace.update(shims)
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(source), "exec"), namespace)
    return namespace


class _ConstantClipsPerVideoSampler:
    """pytorchvideo's sampler of the same name (not installable here), as a stateful iterator."""

    def __init__(self, clip_duration: float, clips_per_video: int) -> None:
        self.clip_duration, self.clips, self.index = Fraction(clip_duration), clips_per_video, 0

    def __call__(self, last_clip_time, video_duration, annotation):
        max_start = Fraction(max(video_duration - self.clip_duration, 0))
        uniform = Fraction(max_start, self.clips)
        start = uniform * self.index
        self.index += 1
        last = self.index >= self.clips or uniform * self.index > max_start
        if last:
            self.index = 0
        return start, start + self.clip_duration, 0, 0, last


def test_clip_starts_match_pytorchvideo_sampler() -> None:
    assert clip_starts(10.0, 2, 3) == [0, Fraction(8, 3), Fraction(16, 3)]
    assert clip_starts(1.0, 2, 5) == [0] * 5
    upstream = _upstream_data()
    for duration in (0.4, 2.0, 3.3, 7.25, 61.0):
        points = upstream["get_clip_timepoints"](_ConstantClipsPerVideoSampler(2, 5), duration)
        assert [start for start, _ in points] == clip_starts(duration, 2, 5)


def test_image_preprocessing_matches_imagebind(tmp_path: Path) -> None:
    path = write_test_image(tmp_path / "photo.png")
    upstream = _upstream_data(Image=Image)["load_and_transform_vision_data"]([str(path)], "cpu")
    assert torch.equal(image_to_imagebind(Image.open(path)), upstream[0])


@pytest.mark.parametrize("seconds, rate", [(3.3, 22050), (0.5, 16000)])
def test_audio_preprocessing_matches_imagebind(tmp_path: Path, seconds: float, rate: int) -> None:
    import torchaudio

    path = write_test_audio(tmp_path / "tone.wav", seconds=seconds, sample_rate=rate)

    def load(file: str) -> tuple[torch.Tensor, int]:  # torchaudio.load does not work here
        data, sample_rate = sf.read(file, dtype="float32", always_2d=True)
        return torch.from_numpy(data.T.copy()), sample_rate

    audio_shim = types.SimpleNamespace(load=load, functional=torchaudio.functional, compliance=torchaudio.compliance)
    upstream = _upstream_data(torchaudio=audio_shim, ConstantClipsPerVideoSampler=_ConstantClipsPerVideoSampler)
    expected = upstream["load_and_transform_audio_data"]([str(path)], "cpu")[0]
    waveform, _ = sf.read(str(path), dtype="float32", always_2d=True)
    torch.testing.assert_close(audio_to_imagebind(waveform.T, rate), expected)


@pytest.mark.parametrize(
    "num_frames, clip_frames",
    [(16, [(0, 15)] * 5), (40, [(0, 15), (5, 20), (10, 25), (15, 30), (20, 35)])],
)
def test_video_preprocessing_matches_imagebind(num_frames: int, clip_frames: list[tuple[int, int]]) -> None:
    """At 8 fps, decord's frames for clip [s, s + 2) are ceil(8s) .. ceil(8s + 16) - 1.

    ImageBind keeps the first and last, scales the short side to 224 (bilinear), normalises and
    crops 3 ways.
    """
    frames = np.stack([np.roll(moving_square_frames(1)[0], 3 * t, axis=1) for t in range(num_frames)])
    frames[..., 2] = np.arange(num_frames, dtype=np.uint8)[:, None, None] * 5
    upstream = _upstream_data()
    normalize = upstream["NormalizeVideo"](mean=video_ib.CLIP_MEAN, std=video_ib.CLIP_STD)
    expected = []
    for first, last in clip_frames:
        clip = torch.from_numpy(frames[[first, last]]).permute(3, 0, 1, 2).float() / 255.0
        clip = nn.functional.interpolate(clip, size=(224, 298), mode="bilinear", align_corners=False)
        expected.append(normalize(clip))
    expected = torch.stack(upstream["SpatialCrop"](224, num_crops=3)(expected))
    torch.testing.assert_close(video_to_imagebind(frames, 8.0), expected)


def test_short_and_tall_media_are_padded_not_rejected(tmp_path: Path) -> None:
    from nextgpt_video.media import load_video

    clip = load_video(write_test_video(tmp_path / "one_second.mp4", seconds=1.0))
    views = video_to_imagebind(clip.frames, clip.fps)
    assert views.shape == (15, 3, 2, 224, 224)
    assert torch.equal(views[0], views[12])  # every clip of a 1 s video covers the whole video
    tall = np.zeros((1, 300, 100, 3), dtype=np.uint8)
    assert video_to_imagebind(tall, 25.0).shape == (15, 3, 2, 224, 224)
    assert audio_to_imagebind(np.zeros((2, 100), dtype=np.float32), 16000).shape == (3, 1, 128, 204)
    with pytest.raises(ValueError, match="waveform"):
        audio_to_imagebind(np.zeros((1, 0), dtype=np.float32), 16000)


def test_plugin_builders_share_one_backbone_from_files(tmp_path: Path) -> None:
    """The image, audio and video plugins' encoder builders, fed from files by their loaders."""
    import nextgpt_audio
    import nextgpt_image
    import nextgpt_video

    local = SharedModels()
    image_encoder = nextgpt_image.build_imagebind_encoder("tiny", local)
    audio_encoder = nextgpt_audio.build_imagebind_encoder("tiny", local)
    video_encoder = nextgpt_video.build_imagebind_encoder("tiny", local)
    assert len(local) == 1
    assert image_encoder.backbone is audio_encoder.backbone is video_encoder.backbone
    image = nextgpt_image.load_image(write_test_image(tmp_path / "a.jpg"))
    sound = nextgpt_audio.load_audio(write_test_audio(tmp_path / "a.flac", seconds=0.5))
    video = nextgpt_video.load_video(write_test_video(tmp_path / "a.webm", seconds=1.0))
    assert image_encoder(image_encoder.preprocess(image)[None]).shape == (1, 1, 32)
    assert audio_encoder(audio_encoder.preprocess(sound)[None]).shape == (1, 1, 32)
    assert video_encoder(video_encoder.preprocess(video)[None]).shape == (1, 1, 32)
