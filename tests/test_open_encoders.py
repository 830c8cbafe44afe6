"""Encoders that permit commercial use: CLAP for sounds and SigLIP over sampled frames for video
(tiny builds, their own preprocessing, save/load), and a model that mixes them with SigLIP images."""

import numpy as np
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
