"""The in-repo modality plugins pass the plugin conformance kit."""

from __future__ import annotations

import numpy as np
from nextgpt.testing import ModalityPluginTests


class TestImagePlugin(ModalityPluginTests):
    modality = "image"
    plugins = ("image",)

    def assert_same_media(self, original, reloaded):
        assert np.array_equal(np.asarray(original), np.asarray(reloaded))  # PNG is lossless


class TestAudioPlugin(ModalityPluginTests):
    modality = "audio"
    plugins = ("audio",)

    def assert_same_media(self, original, reloaded):
        assert reloaded.sample_rate == original.sample_rate
        np.testing.assert_allclose(reloaded.waveform, original.waveform, atol=1 / 2**15)  # 16-bit PCM


class TestVideoPlugin(ModalityPluginTests):
    modality = "video"
    plugins = ("video",)

    def assert_same_media(self, original, reloaded):
        assert reloaded.frames.shape == original.frames.shape
        error = np.abs(reloaded.frames.astype(int) - original.frames.astype(int)).mean()
        assert error < 8  # H.264 is lossy; a mean error of a few levels
