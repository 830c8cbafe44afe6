"""A contact sheet of scored generations (PNG): one row per prompt with the prompt, what came out
(the image; a spectrogram for a sound; a strip of frames for a video) and the world reader's
verdict, green when every attribute was recovered, red otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from toy_world.end_to_end import Scored

ROW = 96
"""Height of a row in pixels."""
TEXT_WIDTH = 330
MEDIA_WIDTH = 4 * ROW


def spectrogram(waveform: np.ndarray, height: int = ROW, width: int = MEDIA_WIDTH) -> Image.Image:
    """A log-magnitude spectrogram (0 to a quarter of the sample rate) of a mono ``waveform`` as a
    grey image, low frequencies at the bottom."""
    wave = np.asarray(waveform, dtype=np.float64).reshape(-1)
    n_fft, hop = 512, max(1, len(wave) // width)
    frames = [wave[i : i + n_fft] for i in range(0, max(len(wave) - n_fft, 1), hop)]
    frames = [np.pad(f, (0, n_fft - len(f))) * np.hanning(n_fft) for f in frames]
    magnitude = np.log1p(np.abs(np.fft.rfft(np.stack(frames), axis=1)).T[: n_fft // 4] * 10)  # 0 to 4 kHz
    magnitude = (255 * magnitude / max(float(magnitude.max()), 1e-6)).astype(np.uint8)[::-1]
    return Image.fromarray(magnitude).resize((width, height), Image.Resampling.BILINEAR).convert("RGB")


def media_tile(item: Scored) -> Image.Image:
    """What came out, drawn ``ROW`` pixels high."""
    tile = Image.new("RGB", (MEDIA_WIDTH, ROW), (40, 40, 40))
    if item.media is None:
        return tile
    if item.modality == "image":
        tile.paste(item.media.convert("RGB").resize((ROW, ROW), Image.Resampling.NEAREST))
    elif item.modality == "audio":
        tile.paste(spectrogram(item.media.waveform))
    else:
        frames = np.asarray(getattr(item.media, "frames", item.media))
        for k, frame in enumerate(frames[:4]):
            tile.paste(Image.fromarray(frame).resize((ROW, ROW), Image.Resampling.NEAREST), (k * ROW, 0))
    return tile


def _wrap(text: str, width: int = 48) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def write_contact_sheet(items: Sequence[Scored], path: str | Path, title: str = "") -> Path:
    """Write ``items`` as a contact sheet PNG at ``path`` (a name already taken is refused)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: exists; the contact sheet does not replace a file")
    top = 24 if title else 0
    sheet = Image.new("RGB", (TEXT_WIDTH * 2 + MEDIA_WIDTH, top + ROW * len(items)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((6, 6), title, fill=(0, 0, 0))
    for row, item in enumerate(items):
        y = top + row * ROW
        for k, line in enumerate(_wrap(f"{item.modality}: {item.prompt}")):
            draw.text((6, y + 6 + 12 * k), line, fill=(0, 0, 0))
        sheet.paste(media_tile(item), (TEXT_WIDTH, y))
        ok = item.verdict.get("all", False)
        colour = (0, 130, 0) if ok else (190, 0, 0)
        seen = ", ".join(f"{k}: {v}" for k, v in item.reading.items()) or "nothing generated"
        lines = [
            "all attributes right"
            if ok
            else "missed: " + ", ".join(k for k, v in item.verdict.items() if not v and k != "all")
        ]
        lines += _wrap(f"reader saw {seen}", 48)
        for k, line in enumerate(lines):
            draw.text((TEXT_WIDTH + MEDIA_WIDTH + 8, y + 6 + 12 * k), line, fill=colour if k == 0 else (0, 0, 0))
        draw.line([(0, y + ROW - 1), (sheet.width, y + ROW - 1)], fill=(200, 200, 200))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
