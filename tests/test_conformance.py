"""The in-repo modality plugins and decoder backends pass the conformance kits, and the kits
fail a plugin that is broken."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nextgpt.config import DecodeOptions
from nextgpt.testing import DecoderBackendTests, ModalityPluginTests, assert_media_equal


class TestImagePlugin(ModalityPluginTests):
    modality = "image"
    plugins = ("image",)  # PNG is lossless: the default comparison, exact


class TestAudioPlugin(ModalityPluginTests):
    modality = "audio"
    plugins = ("audio",)
    round_trip_atol = 1 / 2**15  # 16-bit PCM


class TestVideoPlugin(ModalityPluginTests):
    modality = "video"
    plugins = ("video",)

    def assert_same_media(self, original, reloaded):
        assert reloaded.frames.shape == original.frames.shape
        error = np.abs(reloaded.frames.astype(int) - original.frames.astype(int)).mean()
        assert error < 8  # H.264 is lossy; a mean error of a few levels


class TestStableDiffusionBackend(DecoderBackendTests):
    modality, backend, plugins = "image", "stable-diffusion", ("image",)


class TestPixArtSigmaBackend(DecoderBackendTests):
    modality, backend, plugins = "image", "pixart-sigma", ("image",)


class TestFluxSchnellBackend(DecoderBackendTests):
    modality, backend, plugins = "image", "flux-schnell", ("image",)


class TestAudioLDMBackend(DecoderBackendTests):
    modality, backend, plugins = "audio", "audioldm", ("audio",)
    decode_options = DecodeOptions(steps=2, seconds=0.064, seed=0)


class TestStableAudioBackend(DecoderBackendTests):
    modality, backend, plugins = "audio", "stable-audio", ("audio",)


class TestZeroscopeBackend(DecoderBackendTests):
    modality, backend, plugins = "video", "zeroscope", ("video",)
    decode_options = DecodeOptions(steps=1, num_frames=2, height=16, width=16, seed=0)


class TestCogVideoXBackend(DecoderBackendTests):
    modality, backend, plugins = "video", "cogvideox", ("video",)
    decode_options = DecodeOptions(steps=1, num_frames=5, height=16, width=16, seed=0)


class TestWanBackend(DecoderBackendTests):
    modality, backend, plugins = "video", "wan", ("video",)
    decode_options = DecodeOptions(steps=1, num_frames=5, height=16, width=16, seed=0)


# ----- the kits can fail ---------------------------------------------------------------------------


def test_default_round_trip_compares_content(registry, tmp_path: Path) -> None:
    """A plugin whose files come back with other content fails the default round-trip check (it
    used to pass as long as something loaded)."""
    spec = registry.modality("image")
    kit = TestImagePlugin()
    kit.test_media_round_trip(spec, tmp_path)  # the real plugin passes

    def lossy_save(image, path):
        return spec.save(image.convert("L").convert("RGB"), path)  # drops the colours

    broken = spec.model_copy(update={"save": lossy_save})
    with pytest.raises(AssertionError, match="image round trip: values differ"):
        kit.test_media_round_trip(broken, tmp_path)


def test_assert_media_equal_checks_fields_and_refuses_what_it_cannot_compare() -> None:
    from nextgpt_audio.media import AudioClip

    clip = AudioClip(np.zeros((1, 8), np.float32), 16000)
    assert_media_equal(clip, AudioClip(np.zeros((1, 8), np.float32), 16000))
    with pytest.raises(AssertionError, match=r"audio\.sample_rate"):
        assert_media_equal(clip, AudioClip(np.zeros((1, 8), np.float32), 8000), where="audio")
    with pytest.raises(AssertionError, match="shape"):
        assert_media_equal(clip, AudioClip(np.zeros((1, 9), np.float32), 16000))
    assert_media_equal(clip, AudioClip(np.full((1, 8), 1e-3, np.float32), 16000), atol=2e-3)
    with pytest.raises(AssertionError, match="cannot compare a object"):
        assert_media_equal(object(), object())


def test_backend_kit_fails_a_decoder_that_ignores_its_seed(registry, monkeypatch) -> None:
    """The backend kit's seeded-generation check fails a decoder whose output changes between two
    calls with the same seed."""
    import torch

    kit = TestStableDiffusionBackend()
    spec = registry.modality("image")
    decoder = registry.decoder_backend("image", "stable-diffusion").build("tiny")
    original = decoder.generate

    def unseeded(condition, options):
        return original(condition, options.model_copy(update={"seed": int(torch.randint(0, 10**6, ()))}))

    monkeypatch.setattr(decoder, "generate", unseeded)
    with pytest.raises(AssertionError, match="stable-diffusion output"):
        kit.test_generate_is_seeded_media(decoder, spec, Path("/nonexistent"))


def test_backend_kit_fails_a_decoder_whose_licence_differs_from_its_registration(registry) -> None:
    """The licence policy and the backends table read the registered licence: a decoder that
    says otherwise fails the kit."""
    from nextgpt.licences import CC_BY_NC_4

    kit = TestFluxSchnellBackend()
    entry = registry.decoder_backend("image", "flux-schnell")
    decoder = entry.build("tiny")
    kit.test_registered_with_a_licence(entry, decoder)
    decoder.licence = CC_BY_NC_4
    with pytest.raises(AssertionError, match="differs from the one registered"):
        kit.test_registered_with_a_licence(entry, decoder)
