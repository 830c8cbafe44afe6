"""The toy model's own demo (`nextgpt demo --model toy`): ``demo.json`` in the model folder, a
scripted conversation about held-out captions (requests for an image, a sound and a video, then
a clip of the world shown and a picture of it asked for), with its input files under ``demo/``."""

from __future__ import annotations

import json
import random
from pathlib import Path

from toy_world import world as W


def write_demo(folder: str | Path, heldout: dict[str, list[W.Concept]], seed: int) -> Path:
    """Write ``demo.json`` and its input files into the model ``folder``; returns the script's path."""
    from nextgpt_video.media import VideoClip, save_video

    folder = Path(folder)
    image, sound, video = heldout["image"][0], heldout["audio"][0], heldout["video"][0]
    clip_path = folder / "demo" / "clip.mp4"
    clip_path.parent.mkdir(parents=True, exist_ok=True)
    save_video(VideoClip(W.render_video(video, random.Random(f"{seed}-demo")), W.VIDEO_FPS), clip_path)
    turns = [
        {"text": f"Show me a picture of {image.caption}.", "request": ["image"]},
        {"text": f"Play me the sound of {sound.caption}.", "request": ["audio"]},
        {"text": f"Show me a video of {video.caption}.", "request": ["video"]},
        {"text": "Describe this clip.", "inputs": [{"type": "video", "path": "demo/clip.mp4"}]},
        {"text": "Draw it at the top left.", "request": ["image"]},
    ]
    script = folder / "demo.json"
    script.write_text(json.dumps(turns, indent=1) + "\n")
    return script
