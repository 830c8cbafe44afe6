"""Media I/O of the image, audio and video plugins: round trips and bad input.

Every bad-input case must raise `MediaError` naming the file, never a library's own exception.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from media_fixtures import (
    TEST_FPS,
    TEST_IMAGE_SQUARE,
    TEST_SAMPLE_RATE,
    TEST_TONE_HZ,
    image_array,
    moving_square_frames,
    sine_tone,
    write_test_audio,
    write_test_image,
    write_test_video,
)
from nextgpt.errors import MediaError
from nextgpt_audio.media import AUDIO_EXTENSIONS, AudioClip, load_audio, save_audio
from nextgpt_image.media import IMAGE_EXTENSIONS, load_image, save_image
from nextgpt_video.media import VIDEO_EXTENSIONS, VideoClip, load_video, save_video
from PIL import Image


def _truncate(source: Path, target: Path, fraction: float = 0.5) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def _assert_media_error(load, path: Path, *words: str) -> MediaError:
    with pytest.raises(MediaError) as info:
        load(path)
    error = info.value
    assert str(path) in str(error) and Path(error.path) == path
    for word in words:
        assert word in error.reason.lower(), error.reason
    return error


def _peak_hz(signal: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal))
    return float(np.fft.rfftfreq(len(signal), 1 / sample_rate)[np.argmax(spectrum)])


def _square_left(frame: np.ndarray) -> int:
    """Left edge of the white square: first column whose brightness in rows 18..29 is high."""
    columns = frame[18:30].mean(axis=(0, 2))
    return int(np.argmax(columns > 128))


# ---------------------------------------------------------------------------------- images


@pytest.mark.parametrize("suffix, tolerance", [(".png", 0), (".webp", 0), (".jpg", 6), (".jpeg", 6)])
def test_image_formats_load(tmp_path: Path, suffix: str, tolerance: float) -> None:
    image = load_image(write_test_image(tmp_path / f"picture{suffix}"))
    assert image.mode == "RGB" and image.size == (64, 48)
    diff = np.abs(np.asarray(image).astype(int) - image_array().astype(int))
    assert diff.mean() <= tolerance
    assert np.asarray(image)[TEST_IMAGE_SQUARE].min() >= 200  # the white square is where it was


def test_image_round_trip_is_lossless(tmp_path: Path) -> None:
    original = Image.fromarray(image_array())
    path = save_image(original, tmp_path / "deep" / "folder" / "out.png")
    assert path.is_file() and path.suffix == ".png"
    assert np.array_equal(np.asarray(load_image(path)), image_array())
    assert save_image(image_array(), tmp_path / "from_array").suffix == ".png"


def test_image_load_converts_to_rgb_and_closes(tmp_path: Path) -> None:
    Image.fromarray(image_array()[..., 0]).save(tmp_path / "grey.png")  # mode L
    image = load_image(tmp_path / "grey.png")
    assert image.mode == "RGB"
    (tmp_path / "grey.png").unlink()  # fully loaded: works without the file
    assert image.getpixel((63, 0)) == (255, 255, 255)


def test_image_save_refuses_other_suffix(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="out.jpg"):
        save_image(Image.fromarray(image_array()), tmp_path / "out.jpg")


def test_image_bad_inputs_name_the_file(tmp_path: Path) -> None:
    png = write_test_image(tmp_path / "good.png")
    _assert_media_error(load_image, tmp_path / "missing.png", "not found")
    (tmp_path / "empty.png").touch()
    _assert_media_error(load_image, tmp_path / "empty.png", "empty")
    _assert_media_error(load_image, _truncate(png, tmp_path / "half.png"), "truncated")
    wav = write_test_audio(tmp_path / "sound.wav")
    _assert_media_error(load_image, Path(shutil.copy(wav, tmp_path / "sound.png")), "not a readable image")
    jpg = write_test_image(tmp_path / "photo.jpg")
    _assert_media_error(load_image, Path(shutil.copy(jpg, tmp_path / "photo.png")), "jpeg", "suffix")
    _assert_media_error(load_image, Path(shutil.copy(png, tmp_path / "picture.bmp")), "unsupported")
    assert ".png" in IMAGE_EXTENSIONS and ".webp" in IMAGE_EXTENSIONS


# ----------------------------------------------------------------------------------- audio


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_lossless_audio_formats_load(tmp_path: Path, suffix: str) -> None:
    clip = load_audio(write_test_audio(tmp_path / f"tone{suffix}", seconds=0.75))
    assert clip.sample_rate == TEST_SAMPLE_RATE and clip.waveform.shape == (1, 12000)
    assert clip.waveform.dtype == np.float32 and clip.seconds == pytest.approx(0.75)
    np.testing.assert_allclose(clip.waveform[0], sine_tone(0.75), atol=1.5 / 32768)


def test_ogg_vorbis_loads_as_the_same_tone(tmp_path: Path) -> None:
    clip = load_audio(write_test_audio(tmp_path / "tone.ogg", seconds=1.0))
    assert clip.sample_rate == TEST_SAMPLE_RATE and abs(clip.waveform.shape[1] - 16000) <= 64
    assert _peak_hz(clip.waveform[0], clip.sample_rate) == pytest.approx(TEST_TONE_HZ, abs=2)
    assert 0.3 < np.abs(clip.waveform).max() < 0.7


def test_audio_round_trip_16_bit_wav(tmp_path: Path) -> None:
    stereo = np.stack([sine_tone(0.5, 22050), -sine_tone(0.5, 22050)])
    path = save_audio(AudioClip(stereo, 22050), tmp_path / "sub" / "out.wav")
    assert sf.info(str(path)).subtype == "PCM_16" and sf.info(str(path)).samplerate == 22050
    clip = load_audio(path)
    assert clip.waveform.shape == (2, 11025) and clip.sample_rate == 22050
    np.testing.assert_allclose(clip.waveform, stereo, atol=1.5 / 32768)


def test_audio_save_accepts_1d_and_clips_range(tmp_path: Path) -> None:
    path = save_audio(AudioClip(np.array([0.0, 2.0, -2.0, 0.25], dtype=np.float64), 8000), tmp_path / "mono")
    assert path.suffix == ".wav"
    clip = load_audio(path)
    assert clip.waveform.shape == (1, 4) and clip.waveform.dtype == np.float32
    np.testing.assert_allclose(clip.waveform[0], [0.0, 32767 / 32768, -1.0, 0.25], atol=1e-4)
    with pytest.raises(MediaError, match="out.flac"):
        save_audio(clip, tmp_path / "out.flac")
    with pytest.raises(ValueError, match="float"):
        AudioClip(np.zeros(4, dtype=np.int16), 8000)


def test_audio_bad_inputs_name_the_file(tmp_path: Path) -> None:
    wav = write_test_audio(tmp_path / "good.wav")
    flac = write_test_audio(tmp_path / "good.flac")
    ogg = write_test_audio(tmp_path / "good.ogg")
    _assert_media_error(load_audio, tmp_path / "missing.wav", "not found")
    (tmp_path / "empty.flac").touch()
    _assert_media_error(load_audio, tmp_path / "empty.flac", "empty")
    _assert_media_error(load_audio, _truncate(wav, tmp_path / "half.wav"), "truncated")
    _assert_media_error(load_audio, _truncate(flac, tmp_path / "half.flac"), "truncated")
    _assert_media_error(load_audio, _truncate(ogg, tmp_path / "half.ogg"), "truncated")
    _assert_media_error(load_audio, Path(shutil.copy(flac, tmp_path / "flac.wav")), "flac", "suffix")
    png = write_test_image(tmp_path / "picture.png")
    _assert_media_error(load_audio, Path(shutil.copy(png, tmp_path / "picture.wav")), "not a readable")
    _assert_media_error(load_audio, Path(shutil.copy(wav, tmp_path / "sound.mp3")), "unsupported")
    header_only = tmp_path / "header.wav"
    sf.write(str(header_only), np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    _assert_media_error(load_audio, header_only, "no audio")
    assert AUDIO_EXTENSIONS == (".wav", ".flac", ".ogg")


# ----------------------------------------------------------------------------------- video


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".webm"])
def test_video_formats_load(tmp_path: Path, suffix: str) -> None:
    clip = load_video(write_test_video(tmp_path / f"clip{suffix}", seconds=2.0))
    assert clip.frames.shape == (16, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(TEST_FPS) and clip.seconds == pytest.approx(2.0)
    expected = moving_square_frames(16)
    assert [_square_left(f) for f in clip.frames] == [_square_left(f) for f in expected]
    assert np.abs(clip.frames.astype(int) - expected.astype(int)).mean() < 4


def test_video_round_trip_h264_mp4_with_odd_size(tmp_path: Path) -> None:
    frames = moving_square_frames(10)[:, :47, :63]  # odd height and width
    path = save_video(VideoClip(frames, 12.0), tmp_path / "nested" / "out.mp4")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (64, 48) and stream.frames == 10
    clip = load_video(path)
    assert clip.frames.shape == (10, 48, 64, 3) and clip.fps == pytest.approx(12.0)
    assert [_square_left(f) for f in clip.frames] == [_square_left(f) for f in frames]
    assert np.abs(clip.frames[:, :47, :63].astype(int) - frames.astype(int)).mean() < 3
    assert save_video(VideoClip(frames[:1], 30000 / 1001), tmp_path / "ntsc").suffix == ".mp4"
    assert load_video(tmp_path / "ntsc.mp4").fps == pytest.approx(29.97, abs=0.01)


def test_video_save_refuses_other_suffix(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="out.webm"):
        save_video(VideoClip(moving_square_frames(2), 8), tmp_path / "out.webm")


def test_video_bad_inputs_name_the_file(tmp_path: Path) -> None:
    mp4 = write_test_video(tmp_path / "good.mp4")
    webm = write_test_video(tmp_path / "good.webm", seconds=4.0)
    saved = save_video(VideoClip(moving_square_frames(24), 8), tmp_path / "faststart.mp4")
    _assert_media_error(load_video, tmp_path / "missing.mp4", "not found")
    (tmp_path / "empty.mov").touch()
    _assert_media_error(load_video, tmp_path / "empty.mov", "empty")
    _assert_media_error(load_video, _truncate(mp4, tmp_path / "half.mp4"), "truncated")  # no moov atom
    _assert_media_error(load_video, _truncate(saved, tmp_path / "half_faststart.mp4"), "truncated")
    _assert_media_error(load_video, _truncate(webm, tmp_path / "part.webm", 0.7), "truncated")
    _assert_media_error(load_video, Path(shutil.copy(webm, tmp_path / "webm.mp4")), "webm", "suffix")
    _assert_media_error(load_video, Path(shutil.copy(mp4, tmp_path / "mp4.webm")), "mp4", "suffix")
    png = write_test_image(tmp_path / "picture.png")
    _assert_media_error(load_video, Path(shutil.copy(png, tmp_path / "picture.mp4")), "suffix")
    _assert_media_error(load_video, Path(shutil.copy(mp4, tmp_path / "clip.avi")), "unsupported")
    audio_only = tmp_path / "audio_only.mp4"
    with av.open(str(audio_only), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(sine_tone(0.5)[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    _assert_media_error(load_video, audio_only, "no video stream")
    assert VIDEO_EXTENSIONS == (".mp4", ".webm", ".mov")
