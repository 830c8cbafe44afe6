"""Encoders that permit commercial use: CLAP for sounds and SigLIP over sampled frames for video
(tiny builds, their own preprocessing, save/load), and a model that mixes them with SigLIP images."""

import numpy as np
import pytest
import torch
from nextgpt_audio.clap import ClapAudioEncoder
from nextgpt_audio.media import AudioClip


def tone(seconds: float, rate: int = 22050, pitch: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * pitch * t)).astype(np.float32)


def test_tiny_clap_encodes_a_sound_to_one_vector_and_round_trips(tmp_path):
    encoder = ClapAudioEncoder.from_source("tiny")
    first = tone(1.0)
    clip = AudioClip(first[None], 22050)
    features = encoder(encoder.preprocess(clip)[None])
    assert features.shape == (1, 1, encoder.dim) and torch.isfinite(features).all()
    assert torch.equal(features, encoder(encoder.preprocess(clip)[None]))  # no random crop
    # past max_length_s only the first seconds count, whatever follows
    longer_a = AudioClip(np.concatenate([first, tone(2.0, pitch=220.0)])[None], 22050)
    longer_b = AudioClip(np.concatenate([first, tone(2.0, pitch=880.0)])[None], 22050)
    assert torch.equal(encoder.preprocess(longer_a), encoder.preprocess(longer_b))
    other = encoder(encoder.preprocess(AudioClip(tone(1.0, pitch=1500.0)[None], 22050))[None])
    assert not torch.allclose(other, features)

    encoder.model.save_pretrained(tmp_path)
    encoder.extractor.save_pretrained(tmp_path)
    loaded = ClapAudioEncoder.from_source(str(tmp_path))
    assert torch.allclose(loaded(loaded.preprocess(clip)[None]), features)


def test_siglip_frames_gives_one_token_per_sampled_frame_in_time_order(tmp_path):
    from nextgpt_video.media import VideoClip
    from nextgpt_video.siglip_frames import SiglipFramesEncoder, frame_indices

    assert frame_indices(10, 4).tolist() == [1, 3, 6, 8] and frame_indices(2, 4).tolist() == [0, 0, 1, 1]
    encoder = SiglipFramesEncoder.from_source("tiny", num_frames=4)
    rng = np.random.default_rng(0)
    clip = VideoClip(rng.integers(0, 255, (10, 20, 24, 3), dtype=np.uint8), fps=8)
    features = encoder(encoder.preprocess(clip)[None])
    assert features.shape == (1, 4, encoder.dim)
    reversed_clip = VideoClip(clip.frames[::-1].copy(), fps=8)
    assert torch.allclose(encoder(encoder.preprocess(reversed_clip)[None])[0], features[0].flip(0), atol=1e-5)
    encoder.model.save_pretrained(tmp_path)
    encoder.processor.save_pretrained(tmp_path)
    loaded = SiglipFramesEncoder.from_source(str(tmp_path), num_frames=4)
    assert torch.allclose(loaded(loaded.preprocess(clip)[None]), features)


def test_a_model_mixing_encoders_sizes_its_projectors_and_round_trips(registry, tmp_path):
    from nextgpt.model import NextGPTModel

    backend = registry.encoders[("audio", "clap")]
    assert backend.licence.name == "Apache-2.0" and backend.licence.commercial == "yes"
    overrides = [
        "modalities.image.encoder.backend=siglip",
        "modalities.audio.encoder.backend=clap",
        "modalities.video.encoder.backend=siglip",
    ]
    model = NextGPTModel.from_pretrained("tiny", registry=registry, overrides=overrides)
    assert model.encoders["audio"].dim == 24 and model.encoders["image"].dim == 32
    assert type(model.encoders["video"]).__name__ == "SiglipFramesEncoder"
    clip = AudioClip(tone(0.5)[None], 22050)
    embeds = model.encode_media("audio", [clip])
    assert embeds.shape[-1] == model.llm.config.hidden_size and torch.isfinite(embeds).all()
    folder = model.save_pretrained(tmp_path / "mixed")
    loaded = NextGPTModel.from_pretrained(folder, registry=registry)
    assert type(loaded.encoders["audio"]).__name__ == "ClapAudioEncoder"
    assert torch.allclose(loaded.encode_media("audio", [clip]), embeds)


OPEN_TINY = [
    "licence_policy=commercial",
    "modalities.image.encoder.backend=siglip",
    "modalities.image.decoder.backend=flux-schnell",
    "modalities.audio.encoder.backend=clap",
    "modalities.audio.decoder.backend=stable-audio",
    "modalities.video.encoder.backend=siglip",
    "modalities.video.decoder.backend=cogvideox",
    "modalities.video.decode.num_frames=5",
]
"""The tiny version of `open-7b` as overrides of the tiny preset (examples/model_configs/tiny_open.yaml)."""


def test_open_7b_is_every_part_commercial_from_its_configuration_alone(registry):
    from nextgpt.licence_policy import planned_licences
    from nextgpt.presets import preset_config

    config = preset_config("open-7b", registry)
    assert config.licence_policy == "commercial" and config.llm.template == "auto"
    chosen = {name: (m["encoder"]["backend"], m["decoder"]["backend"]) for name, m in config.modalities.items()}
    assert chosen == {
        "image": ("siglip", "flux-schnell"),
        "audio": ("clap", "stable-audio"),
        "video": ("siglip", "cogvideox"),
    }
    licences = {c.label: c.licence.commercial for c in planned_licences(config, registry)}
    assert set(licences.values()) == {"yes", "restricted"} and licences["audio decoder (stable-audio)"] == "restricted"


def test_open_7b_licence_summary_passes_and_the_release_is_refused(tmp_path, capsys):
    import json

    from nextgpt.cli import main

    assert main(["plugins", "--model", "open-7b", "--json", str(tmp_path / "open.json")]) == 0
    summary = json.loads((tmp_path / "open.json").read_text())["model"]
    assert summary["commercial_policy"]["passes"] and not summary["commercial_policy"]["refused"]
    assert main(["chat", "--model", "tiny", "--commercial-only", "-p", "hi"]) == 1
    error = capsys.readouterr().err
    assert "imagebind" in error and "siglip" in error  # names the refused part and what could replace it


def test_tiny_open_system_answers_with_every_modality_from_every_modality(tmp_path, capsys):
    from nextgpt.cli import main

    media = [
        "--image",
        "examples/media/cat.png",
        "--audio",
        "examples/media/meow.wav",
        "--video",
        "examples/media/ball.mp4",
    ]
    request = ["--request", "image", "--request", "audio", "--request", "video"]
    args = ["chat", "--config", "examples/model_configs/tiny_open.yaml", "-p", "Show me.", *media, *request]
    assert main([*args, "--out", str(tmp_path), "--quiet"]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["turn1_audio_0.wav", "turn1_image_0.png", "turn1_video_0.mp4"]


@pytest.mark.parametrize("stage", [1, 2])
def test_tiny_open_system_trains_stages_1_and_2(stage, registry, tmp_path):
    from nextgpt.data import DatasetSource, NextGPTDataset, collate_samples
    from nextgpt.data.synthetic import write_synthetic_dataset
    from nextgpt.training.module import NextGPTLightningModule

    module = NextGPTLightningModule(
        "tiny", stage=stage, plugins=["image", "audio", "video"], overrides=OPEN_TINY, lr=1e-2, weight_decay=0.0
    )
    module.configure_model()
    specs = {name: registry.modality(name) for name in ("image", "audio", "video")}
    data = write_synthetic_dataset(tmp_path, specs, per_modality=1)
    kind = "pairs" if stage == 1 else "instruction"
    dataset = NextGPTDataset([DatasetSource(path=str(data[kind]), format=kind)], module.model.specs)
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    trained = [p for p in module.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trained]
    optimizer = torch.optim.AdamW(trained, lr=1e-2)
    for _ in range(2):
        terms = module.compute_losses(batch)
        assert torch.isfinite(terms.total)
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()
    if stage == 2:
        assert set(terms.align) == {"image", "audio", "video"}
    assert any(not torch.equal(b, p) for b, p in zip(before, trained, strict=True))
