"""Reading and writing sound files with soundfile (libsndfile).

`load_audio` returns an `AudioClip` (float32 waveform ``[channels, samples]`` and its sample
rate) and turns every kind of bad input (missing, empty, truncated, mislabelled file,
unsupported suffix, a folder or an unreadable file, NaN or infinite samples in a float file)
into a `nextgpt.errors.MediaError` naming the file. `save_audio` writes 16-bit PCM WAV, which
every tool reads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from nextgpt.errors import MediaError
from nextgpt.files import check_media_file

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg")
"""Suffixes `load_audio` accepts (lower case)."""

_FORMATS: dict[str, tuple[str, ...]] = {
    ".wav": ("WAV", "WAVEX", "RF64"),
    ".flac": ("FLAC",),
    ".ogg": ("OGG",),
}
"""The libsndfile container formats each suffix promises."""


@dataclass
class AudioClip:
    """A sound: ``waveform`` float32 ``[channels, samples]`` in [-1, 1] at ``sample_rate`` Hz.

    A 1-D waveform is taken as mono and stored as ``[1, samples]``.
    """

    waveform: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        waveform = np.asarray(self.waveform)
        if not np.issubdtype(waveform.dtype, np.floating):
            raise ValueError(f"AudioClip needs a float waveform in [-1, 1], got dtype {waveform.dtype}")
        if waveform.ndim == 1:
            waveform = waveform[None, :]
        if waveform.ndim != 2:
            raise ValueError(f"AudioClip needs a waveform [channels, samples], got shape {list(waveform.shape)}")
        if int(self.sample_rate) <= 0:
            raise ValueError(f"AudioClip needs a positive sample rate, got {self.sample_rate}")
        self.waveform = waveform.astype(np.float32, copy=False)
        self.sample_rate = int(self.sample_rate)

    @property
    def channels(self) -> int:
        return int(self.waveform.shape[0])

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.waveform.shape[1] / self.sample_rate


def _riff_is_truncated(path: Path) -> bool:
    """Whether a RIFF/WAVE file is shorter than its header says.

    libsndfile silently reads what is there of a truncated WAV, so the declared RIFF size is
    compared with the file size. Streaming writers leave the size 0 or 0xFFFFFFFF (RF64): unknown.
    """
    with path.open("rb") as handle:
        header = handle.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return False
    (declared,) = struct.unpack("<I", header[4:8])
    if declared in (0, 0xFFFFFFFF):
        return False
    return path.stat().st_size < declared + 8


def load_audio(path: str | Path) -> AudioClip:
    """Read a sound file into an `AudioClip` (all channels, the file's own sample rate).

    Args:
        path: a ``.wav``, ``.flac`` or ``.ogg`` (Vorbis/Opus) file.

    Raises:
        MediaError: naming the file, when it is missing, empty, truncated or corrupt, a folder
            or unreadable, holds no samples or NaN / infinite ones, is another format than its
            suffix says, or has an unsupported suffix.
    """
    path = Path(path)
    check_media_file(path, AUDIO_EXTENSIONS, "audio")
    suffix = path.suffix.lower()
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile: "Format not recognised", "file is malformed"...
        raise MediaError(path, f"not a readable sound file (unknown, truncated or corrupt content): {exc}") from exc
    if info.format not in _FORMATS[suffix]:
        raise MediaError(
            path,
            f"content is {info.format}, not {_FORMATS[suffix][0]} as its suffix {suffix!r} says",
        )
    if info.format in ("WAV", "WAVEX") and _riff_is_truncated(path):
        raise MediaError(path, "truncated WAV file: shorter than its header says")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise MediaError(path, f"truncated or corrupt sound file: {exc}") from exc
    if data.shape[0] == 0:
        raise MediaError(path, "file holds no audio samples")
    bad = ~np.isfinite(data)
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        raise MediaError(
            path, f"{int(bad.sum())} sample(s) are NaN or infinite (the first at {first / int(sample_rate):.3f} s)"
        )
    if info.frames > 0 and data.shape[0] < info.frames:
        raise MediaError(path, f"truncated sound file: {data.shape[0]} of {info.frames} samples readable")
    return AudioClip(waveform=np.ascontiguousarray(data.T), sample_rate=int(sample_rate))


def save_audio(clip: AudioClip, path: str | Path) -> Path:
    """Write a clip as 16-bit PCM WAV at its own sample rate and return the path written.

    Args:
        clip: the sound; samples beyond [-1, 1] are clipped. A clip built from a 1-D waveform
            is mono.
        path: destination; a missing suffix becomes ``.wav``; parent folders are created.

    Raises:
        MediaError: when ``path`` has another suffix than ``.wav`` or ``clip`` is not an
            `AudioClip`, or holds no samples or NaN / infinite ones.
    """
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".wav")
    if path.suffix.lower() != ".wav":
        raise MediaError(path, "sounds are saved as WAV; use a .wav suffix")
    if not isinstance(clip, AudioClip):
        raise MediaError(path, f"expected an AudioClip, got {type(clip).__name__}")
    if clip.waveform.shape[1] == 0:
        raise MediaError(path, "the clip holds no samples")
    if not np.isfinite(clip.waveform).all():
        raise MediaError(path, "the clip holds NaN or infinite samples; nothing written")
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.clip(clip.waveform, -1.0, 1.0).T
    sf.write(str(path), samples, clip.sample_rate, subtype="PCM_16", format="WAV")
    return path
