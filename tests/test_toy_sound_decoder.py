"""The toy world's sound decoder (examples/toy_world, `toy_world.sound_decoder`): the AudioLDM
pipeline sized for the world builds, a few steps of each part's training lower its loss, it
generates a 1-second 16 kHz sound, and the trained pipeline saves and loads through
`AudioLDMDecoder` giving the same sound for the same seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nextgpt.config import DecodeOptions
from nextgpt_audio.decoder import AudioLDMDecoder
from toy_world import world as W
from toy_world.sound_decoder import HOP, SoundDecoderBudget, build_sound_pipeline, train_sound_decoder

OPTIONS = DecodeOptions(seconds=1.0, steps=2, guidance=2.5, seed=0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread, as the toy world's builds use (deterministic); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A sound decoder loaded from a saved random pipeline and trained with the small budget on
    six of the world's captions, with its training report."""
    folder = tmp_path_factory.mktemp("sound") / "random"
    build_sound_pipeline(seed=0).save_pretrained(folder)
    decoder = AudioLDMDecoder(source=str(folder), progress_bar=False)
    concepts = W.concepts("audio")[::6]
    report = train_sound_decoder(decoder, concepts, SoundDecoderBudget.small(), seed=0, log=lambda _: None)
    return decoder, concepts, report


def test_pipeline_is_sized_for_the_world():
    pipeline = build_sound_pipeline(seed=0)
    assert HOP == math.prod(pipeline.vocoder.config.upsample_rates) == 160
    assert pipeline.unet.config.class_embed_type == "simple_projection"
    assert pipeline.unet.config.projection_class_embeddings_input_dim == pipeline.text_encoder.config.projection_dim


def test_training_lowers_every_loss(trained):
    _, concepts, report = trained
    assert report["items"] == len(concepts)
    for part in ("vocoder", "vae", "unet"):
        before, after = report[part]["before"], report[part]["after"]
        assert math.isfinite(before) and math.isfinite(after), part
        assert after < before, part
    assert report["budget"]["unet_steps"] == SoundDecoderBudget.small().unet_steps


def test_generates_one_second_and_round_trips(trained, tmp_path):
    decoder, concepts, _ = trained
    assert decoder.pipeline.scheduler.config.prediction_type == "v_prediction"
    condition = decoder.condition_from_text([concepts[0].caption])
    clip = decoder.generate(condition, OPTIONS)[0]
    assert clip.sample_rate == W.SAMPLE_RATE
    assert clip.waveform.shape == (1, W.SAMPLE_RATE)
    assert np.isfinite(clip.waveform).all()

    decoder.pipeline.save_pretrained(tmp_path / "trained")
    loaded = AudioLDMDecoder(source=str(tmp_path / "trained"), progress_bar=False)
    again = loaded.generate(loaded.condition_from_text([concepts[0].caption]), OPTIONS)[0]
    np.testing.assert_allclose(again.waveform, clip.waveform, atol=1e-5)
