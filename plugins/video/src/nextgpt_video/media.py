"""Reading and writing video files with PyAV (FFmpeg's libraries, no ffmpeg binary needed).

`load_video` decodes every frame of the first video stream into a `VideoClip` (uint8
``[T, H, W, 3]`` RGB frames and the frame rate) and turns every kind of bad input (missing,
empty, truncated, mislabelled file, no video stream, unsupported suffix, a folder or an
unreadable file) into a
`nextgpt.errors.MediaError` naming the file. `save_video` writes H.264 in MP4 (yuv420p,
``+faststart``), which browsers and standard players open.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from nextgpt.errors import MediaError
from nextgpt.files import check_media_file

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".webm", ".mov")
"""Suffixes `load_video` accepts (lower case)."""

_DEMUXERS: dict[str, tuple[str, ...]] = {
    ".mp4": ("mp4", "mov"),
    ".mov": ("mp4", "mov"),
    ".webm": ("webm", "matroska"),
}
"""FFmpeg demuxer names each suffix accepts (MP4 and QuickTime share one demuxer)."""


@dataclass
class VideoClip:
    """A video: ``frames`` uint8 RGB ``[T, H, W, 3]`` shown at ``fps`` frames per second."""

    frames: np.ndarray
    fps: float

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"VideoClip needs uint8 frames [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
        if not float(self.fps) > 0:
            raise ValueError(f"VideoClip needs a positive frame rate, got {self.fps}")
        self.frames = frames
        self.fps = float(self.fps)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.num_frames / self.fps


def _expected_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, fps: float
) -> int | None:
    """Frames the headers promise: the stream's count, else duration x rate; None if unknown."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    if container.duration and container.duration > 0:
        return int(container.duration / av.time_base * fps)
    return None


def load_video(path: str | Path) -> VideoClip:
    """Decode the first video stream of a file into a `VideoClip` (audio streams are ignored).

    Args:
        path: a ``.mp4``, ``.mov`` or ``.webm`` file.

    Raises:
        MediaError: naming the file, when it is missing, empty, truncated or corrupt, a folder
            or unreadable, has no
            video stream or no decodable frame, is another container than its suffix says, or
            has an unsupported suffix.
    """
    path = Path(path)
    check_media_file(path, VIDEO_EXTENSIONS, "video")
    suffix = path.suffix.lower()
    try:
        container = av.open(str(path), mode="r")
    except Exception as exc:  # av.error.InvalidDataError etc.; MP4 cut before its moov atom lands here
        raise MediaError(path, f"not a readable video (unknown, truncated or corrupt content): {exc}") from exc
    with container:
        demuxers = set(container.format.name.split(","))
        if not demuxers & set(_DEMUXERS[suffix]):
            raise MediaError(
                path,
                f"content is {container.format.name!r}, not {_DEMUXERS[suffix][0]} as its suffix {suffix!r} says",
            )
        if not container.streams.video:
            raise MediaError(path, "file has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        try:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        except Exception as exc:
            raise MediaError(path, f"truncated or corrupt video: {exc}") from exc
        if not frames:
            raise MediaError(path, "no decodable video frame (truncated or corrupt file)")
        if rate is None or rate <= 0:
            duration = container.duration / av.time_base if container.duration else 0.0
            rate = Fraction(len(frames) / duration) if duration > 0 else Fraction(25)
        fps = float(rate)
        expected = _expected_frames(container, stream, fps)
        # A frame of slack for rounding in duration-based counts (WebM has no frame count).
        if expected is not None and len(frames) < expected - (0 if stream.frames else 1):
            raise MediaError(path, f"truncated video: {len(frames)} of {expected} frames decodable")
    return VideoClip(frames=np.stack(frames), fps=fps)


def save_video(clip: VideoClip, path: str | Path, crf: int = 18, threads: int = 1) -> Path:
    """Write a clip as H.264 MP4 (libx264, yuv420p) and return the path written.

    yuv420p needs even sizes: odd widths or heights are padded by repeating the last row or
    column. With one encoder thread (the default) the same clip always gives the same bytes;
    libx264's threaded encoding can differ from run to run on a loaded machine.

    Args:
        clip: the frames and their rate.
        path: destination; a missing suffix becomes ``.mp4``; parent folders are created.
        crf: libx264 constant rate factor (0 lossless .. 51 worst; 18 looks lossless).
        threads: libx264 threads (0: as many as it likes, faster for long clips).

    Raises:
        MediaError: when ``path`` has another suffix than ``.mp4``, ``clip`` is not a
            `VideoClip`, it holds no frames, or encoding fails.
    """
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".mp4")
    if path.suffix.lower() != ".mp4":
        raise MediaError(path, "videos are saved as H.264 MP4; use a .mp4 suffix")
    if not isinstance(clip, VideoClip):
        raise MediaError(path, f"expected a VideoClip, got {type(clip).__name__}")
    if clip.num_frames == 0:
        raise MediaError(path, "the clip holds no frames")
    frames = clip.frames
    height, width = frames.shape[1:3]
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rate = Fraction(clip.fps).limit_denominator(1001)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "threads": str(threads)}
            for index, array in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    except OSError as exc:  # PyAV's errors for a file it cannot create are OSErrors
        raise MediaError(path, f"cannot write: {exc.strerror or exc}") from exc
    except Exception as exc:
        raise MediaError(path, f"could not encode H.264 MP4: {exc}") from exc
    return path
