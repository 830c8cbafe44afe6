"""A synthetic example sound: a high beep then a low beep, 1 s at 16 kHz."""

from __future__ import annotations

import numpy as np

from nextgpt_audio.media import AudioClip


def example_audio(seconds: float = 1.0, sample_rate: int = 16000) -> AudioClip:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    freq = np.where(t < seconds / 2, 880.0, 440.0)
    wave = 0.4 * np.sin(2 * np.pi * freq * t) * np.minimum(1.0, 20 * np.abs(np.sin(np.pi * t / seconds * 2)))
    return AudioClip(waveform=wave.astype(np.float32)[None, :], sample_rate=sample_rate)
