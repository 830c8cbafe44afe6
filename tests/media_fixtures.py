"""Small, deterministic media files for tests, written with Pillow, soundfile and PyAV directly.

The content is known, so tests can assert on it after a round trip:

- `write_test_image`: 64 x 48 RGB, red rises left to right, green top to bottom, a white
  square at rows 8..23, columns 16..31 (`TEST_IMAGE_SQUARE`).
- `write_test_audio`: a 440 Hz sine at amplitude 0.5 (`TEST_TONE_HZ`), mono, 16 kHz.
- `write_test_video`: 64 x 48 at 8 fps; black frames with a white 12 x 12 square moving right
  by 2 pixels per frame (`moving_square_frames`).

The format follows the suffix (PNG/JPEG/WebP; WAV/FLAC/OGG; MP4/MOV with H.264, WebM with VP9),
so the writers here are independent of the loaders under test.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

TEST_IMAGE_SIZE = (64, 48)
"""(width, height) of `write_test_image`."""
TEST_IMAGE_SQUARE = (slice(8, 24), slice(16, 32))
"""(rows, columns) of the white square in `write_test_image`."""
TEST_TONE_HZ = 440.0
TEST_SAMPLE_RATE = 16000
TEST_VIDEO_SIZE = (64, 48)
TEST_FPS = 8


def image_array() -> np.ndarray:
    """The pixels `write_test_image` writes: uint8 ``[48, 64, 3]``."""
    width, height = TEST_IMAGE_SIZE
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    array[..., 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    array[..., 2] = 64
    array[TEST_IMAGE_SQUARE] = 255
    return array


def write_test_image(path: str | Path) -> Path:
    """Write `image_array` as PNG, JPEG or WebP (by suffix; lossless WebP) and return the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(image_array())
    suffix = path.suffix.lower()
    if suffix == ".png":
        image.save(path, format="PNG")
    elif suffix in (".jpg", ".jpeg"):
        image.save(path, format="JPEG", quality=95)
    elif suffix == ".webp":
        image.save(path, format="WEBP", lossless=True)
    else:
        raise ValueError(f"write_test_image: no writer for suffix {suffix!r}")
    return path


def sine_tone(seconds: float = 1.0, sample_rate: int = TEST_SAMPLE_RATE) -> np.ndarray:
    """The samples `write_test_audio` writes: float32 ``[samples]``."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (0.5 * np.sin(2 * np.pi * TEST_TONE_HZ * t)).astype(np.float32)


def write_test_audio(path: str | Path, seconds: float = 1.0, sample_rate: int = TEST_SAMPLE_RATE) -> Path:
    """Write `sine_tone` as 16-bit WAV, 16-bit FLAC or Ogg Vorbis (by suffix); return the path."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    formats = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
    suffix = path.suffix.lower()
    if suffix not in formats:
        raise ValueError(f"write_test_audio: no writer for suffix {suffix!r}")
    container, subtype = formats[suffix]
    sf.write(str(path), sine_tone(seconds, sample_rate), sample_rate, format=container, subtype=subtype)
    return path


def moving_square_frames(num_frames: int) -> np.ndarray:
    """The frames `write_test_video` writes: uint8 ``[T, 48, 64, 3]``.

    The square's left edge is at column ``2t mod 52`` in frame ``t``; rows 18..29.
    """
    width, height = TEST_VIDEO_SIZE
    frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    for index in range(num_frames):
        left = (2 * index) % (width - 12)
        frames[index, 18:30, left : left + 12] = 255
    return frames


def write_test_video(path: str | Path, seconds: float = 2.0, fps: int = TEST_FPS) -> Path:
    """Write `moving_square_frames` as H.264 MP4/MOV or VP9 WebM (by suffix) and return the path."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codecs = {
        ".mp4": ("mp4", "libx264"),
        ".mov": ("mov", "libx264"),
        ".webm": ("webm", "libvpx-vp9"),
    }
    suffix = path.suffix.lower()
    if suffix not in codecs:
        raise ValueError(f"write_test_video: no writer for suffix {suffix!r}")
    container_format, codec = codecs[suffix]
    frames = moving_square_frames(max(1, int(round(seconds * fps))))
    with av.open(str(path), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = TEST_VIDEO_SIZE
        stream.pix_fmt = "yuv420p"
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
