"""`nextgpt demo` and `nextgpt chat` end to end, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from PIL import Image

BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "NEXTGPT_PLUGINS": "image,audio,video"}
    return subprocess.run(
        [str(BIN / "nextgpt"), *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    result = run("demo", "--out", "demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "RANDOM weights" in out
    assert "turn  inputs" in out and "seconds" in out
    files = {p.suffix: p for p in (tmp_path / "demo").iterdir() if p.is_file()}
    assert {".png", ".wav", ".mp4"} <= set(files)
    with Image.open(files[".png"]) as image:
        image.verify()
    audio, rate = soundfile.read(files[".wav"])
    assert rate == 16000 and audio.size > 0
    with av.open(str(files[".mp4"])) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) >= 2 and isinstance(frames[0], np.ndarray)
    # the last turn asks for every modality at once
    last = [line for line in out.splitlines() if line.startswith("4 ")][0]
    assert "image" in last and "audio" in last and "video" in last


def test_chat_one_shot_with_media(tmp_path):
    from nextgpt_image.examples import example_image
    from nextgpt_image.media import save_image

    picture = save_image(example_image(), tmp_path / "in.png")
    result = run(
        "chat", "-p", "what is this?", "--image", str(picture), "--request", "image", "--out", "o", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "assistant:" in result.stdout and "[image]" in result.stdout
    assert list((tmp_path / "o").glob("*.png"))


def test_chat_bad_file_is_a_clear_error(tmp_path):
    result = run("chat", "-p", "hi", "--audio", str(tmp_path / "missing.wav"), cwd=tmp_path)
    assert result.returncode == 1
    assert "missing.wav" in result.stderr and "Traceback" not in result.stderr
