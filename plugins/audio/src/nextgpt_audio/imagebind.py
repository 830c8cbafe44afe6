"""ImageBind's preprocessing of a sound, as its ``data.py`` does it, for the ImageBind audio
tower: a waveform -> ``[3, 1, 128, 204]`` (three 2-second clips as normalised Kaldi fbanks).

Core's `nextgpt.encoders.imagebind` holds what every modality shares (the model, one instance
for all of them, `ImageBindEncoder`, and `clip_starts`, where ImageBind places the clips of a
timed medium); this module is what is particular to sound, given to
`ImageBindEncoder.from_shared` as ``preprocess``.
"""

from __future__ import annotations

import numpy as np
import torch
from nextgpt.encoders.imagebind import clip_starts

SAMPLE_RATE = 16000
"""The rate ImageBind resamples every sound to."""
CLIP_SECONDS = 2
CLIPS = 3
MEL_BINS = 128
TARGET_FRAMES = 204
"""Fbank frames per clip (padded or cut to this)."""
FBANK_MEAN = -4.268
FBANK_STD = 9.138


def _melspec(clip: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """ImageBind's ``waveform2melspec`` after its mean removal: ``[1, n]`` -> ``[1, 128, 204]``."""
    import torchaudio

    window = int(sample_rate * 0.025)
    if clip.shape[1] < window:  # Kaldi needs one full 25 ms window; pad silence (upstream fails)
        clip = torch.nn.functional.pad(clip, (0, window - clip.shape[1]))
    fbank = torchaudio.compliance.kaldi.fbank(
        clip,
        htk_compat=True,
        sample_frequency=sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=MEL_BINS,
        dither=0.0,
        frame_length=25,
        frame_shift=10,
    ).transpose(0, 1)
    gap = TARGET_FRAMES - fbank.shape[1]
    if gap > 0:
        fbank = torch.nn.functional.pad(fbank, (0, gap), mode="constant", value=0)
    else:
        fbank = fbank[:, :TARGET_FRAMES]
    return fbank.unsqueeze(0)


def audio_to_imagebind(waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
    """A waveform ``[channels, samples]`` (or ``[samples]``) -> ``[3, 1, 128, 204]``.

    Mono mixdown (upstream takes the first channel of a multi-channel file; the mean is the
    faithful mono signal), resampling to 16 kHz, 3 clips of 2 s placed like ImageBind, a Kaldi
    fbank per clip padded or cut to 204 frames, normalised with mean -4.268 / std 9.138.
    Sounds shorter than 2 s are padded with silence.
    """
    import torchaudio

    signal = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
    if signal.ndim == 1:
        signal = signal.unsqueeze(0)
    if signal.ndim != 2 or signal.shape[1] == 0:
        raise ValueError(f"expected a waveform [channels, samples], got shape {list(signal.shape)}")
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    signal = signal.mean(dim=0, keepdim=True)
    if sample_rate != SAMPLE_RATE:
        signal = torchaudio.functional.resample(signal, orig_freq=sample_rate, new_freq=SAMPLE_RATE)
    rate = SAMPLE_RATE
    clips = []
    for start in clip_starts(signal.shape[1] / rate, CLIP_SECONDS, CLIPS):
        piece = signal[:, int(start * rate) : int((start + CLIP_SECONDS) * rate)]
        # In place on a view, as upstream: overlapping later clips see the earlier clips' mean
        # removed. Only rounding-level, but it keeps the features identical to ImageBind's.
        piece -= piece.mean()
        clips.append((_melspec(piece, rate) - FBANK_MEAN) / FBANK_STD)
    return torch.stack(clips, dim=0)
