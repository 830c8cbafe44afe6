"""The world reader: a deterministic analysis of an image, sound or video that recovers the
attributes of its caption, so that generated media can be scored against the prompt that asked
for them (no learned model; it is measured on the world's own ground-truth files).

* **Image**: the background shade is the image's median; the shape's colour is the world colour
  nearest to the median of the pixels far from the background; the shape is the set of pixels
  nearer to that colour than to the background. Its *position* is the nearest world position
  to the shape's centroid; its *shape* is the world shape whose template (drawn with the world's
  own renderer at the size and place implied by the segment's area and centroid) overlaps the
  segment most (intersection over union).
* **Sound**: the magnitude spectrum of each tone's window (the first and the last third of
  the clip); the *pitch* is the world pitch nearest in log-frequency to the strongest peak; the
  *sound* is ``buzz`` when the odd harmonics (3f, 5f) carry a sizeable share of the fundamental's
  energy (a square-ish tone), ``beep`` otherwise (a sine).
* **Video**: *colour* and *shape* read as for an image on the frame whose shape is most
  complete; the *direction* is the dominant axis and sign of the shape's centroid track from
  the first frames to the last.

`read` dispatches on the modality and returns the attributes in `world.ATTRIBUTE_NAMES` order;
`score` compares a reading with a caption's attributes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toy_world import world as W

_PALETTE = np.array([W.COLOURS[c] for c in W.COLOURS], dtype=np.float32)
_TONE_WINDOWS = ((0.06, 0.34), (0.64, 0.94))
"""Seconds of each tone's analysis window: inside the first and the second tone of every
world sound (the first ends at 0.36 s or later, the second starts by 0.60 s)."""
_SHAPE_AREA = {"circle": np.pi, "square": 4 * (0.9**2 - 0.5**2), "triangle": 0.5 * 2 * 1.8, "cross": 1.75}
"""Area of each world shape in units of its radius squared (see ``world._shape_mask``)."""
_SHAPE_CENTROID_DY = {"circle": 0.0, "square": 0.0, "triangle": 0.2, "cross": 0.0}
"""How far below the shape's centre its centroid lies, in radii (the triangle points up)."""


# -- images -----------------------------------------------------------------------------------------


def _as_pixels(image: Any) -> np.ndarray:
    """float32 ``[H, W, 3]`` in 0..255 from a PIL image or a uint8 / float array."""
    pixels = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    pixels = pixels.astype(np.float32)
    if pixels.max() <= 1.0 + 1e-6 and pixels.dtype != np.uint8:
        pixels = pixels * 255.0
    return pixels[..., :3]


def segment(pixels: np.ndarray) -> tuple[str, np.ndarray]:
    """``(colour, mask)``: the shape's world colour and its pixels (``[H, W]`` bool)."""
    flat = pixels.reshape(-1, 3)
    background = np.median(flat, axis=0)
    distance = np.linalg.norm(flat - background, axis=1)
    far = distance > max(60.0, np.percentile(distance, 50) * 3)
    chosen = np.median(flat[far], axis=0) if far.any() else flat[distance.argmax()]
    colour_index = int(np.linalg.norm(_PALETTE - chosen, axis=1).argmin())
    colour = _PALETTE[colour_index]
    nearer = np.linalg.norm(flat - colour, axis=1) < np.linalg.norm(flat - background, axis=1)
    return tuple(W.COLOURS)[colour_index], nearer.reshape(pixels.shape[:2])


def _shape_of(mask: np.ndarray) -> str:
    """The world shape whose template overlaps ``mask`` most."""
    size = mask.shape[0]
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return W.SHAPES[0]
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    best, best_iou = W.SHAPES[0], -1.0
    for shape in W.SHAPES:
        radius = float(np.sqrt(len(xs) / _SHAPE_AREA[shape]))
        template = W._shape_mask(shape, size, cx, cy - _SHAPE_CENTROID_DY[shape] * radius, radius)
        iou = (template & mask).sum() / max((template | mask).sum(), 1)
        if iou > best_iou:
            best, best_iou = shape, float(iou)
    return best


def _position_of(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return "center"
    fx, fy = (xs.mean() + 0.5) / mask.shape[1], (ys.mean() + 0.5) / mask.shape[0]
    return min(W.POSITIONS, key=lambda p: (W.POSITIONS[p][0] - fx) ** 2 + (W.POSITIONS[p][1] - fy) ** 2)


def _square(pixels: np.ndarray) -> np.ndarray:
    """Centre-crop to a square (the world's media are square; a generated one may not be)."""
    h, w = pixels.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return pixels[top : top + side, left : left + side]


def read_image(image: Any) -> dict[str, str]:
    """``{colour, shape, position}`` of a world image (PIL image or ``[H, W, 3]`` array)."""
    pixels = _square(_as_pixels(image))
    colour, mask = segment(pixels)
    return {"colour": colour, "shape": _shape_of(mask), "position": _position_of(mask)}


# -- videos -----------------------------------------------------------------------------------------


def read_video(frames: Any) -> dict[str, str]:
    """``{colour, shape, direction}`` of a world video (``[T, H, W, 3]`` frames, or a clip with
    a ``frames`` attribute)."""
    frames = np.asarray(getattr(frames, "frames", frames))
    pixels = [_square(_as_pixels(f)) for f in frames]
    colours, masks = zip(*(segment(p) for p in pixels), strict=True)
    # the colour most frames agree on, then every frame's mask for that colour
    colour = max(set(colours), key=colours.count)
    masks = [m if c == colour else segment_with(p, colour) for p, c, m in zip(pixels, colours, masks, strict=True)]
    areas = [int(m.sum()) for m in masks]
    # the shape: on the frame with the largest segment (the shape is cut by the border least)
    shape = _shape_of(masks[int(np.argmax(areas))])
    centres = np.array(
        [[np.nonzero(m)[1].mean(), np.nonzero(m)[0].mean()] if m.any() else [np.nan, np.nan] for m in masks]
    )
    valid = centres[~np.isnan(centres).any(1)]
    direction = "right"
    if len(valid) >= 2:
        half = max(1, len(valid) // 2)
        dx, dy = valid[-half:].mean(0) - valid[:half].mean(0)
        direction = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")
    return {"colour": colour, "shape": shape, "direction": direction}


def segment_with(pixels: np.ndarray, colour: str) -> np.ndarray:
    """The pixels of ``pixels`` nearer to the world ``colour`` than to the background."""
    flat = pixels.reshape(-1, 3)
    background = np.median(flat, axis=0)
    target = np.array(W.COLOURS[colour], dtype=np.float32)
    nearer = np.linalg.norm(flat - target, axis=1) < np.linalg.norm(flat - background, axis=1)
    return nearer.reshape(pixels.shape[:2])


# -- sounds -----------------------------------------------------------------------------------------


def _band_energy(spectrum: np.ndarray, freqs: np.ndarray, centre: float, width: float) -> float:
    band = (freqs >= centre * (1 - width)) & (freqs <= centre * (1 + width))
    return float(spectrum[band].sum()) if band.any() else 0.0


def _read_tone(wave: np.ndarray, sample_rate: int) -> tuple[str, str]:
    """``(pitch, sound)`` of one tone's samples."""
    window = np.hanning(len(wave))
    spectrum = np.abs(np.fft.rfft(wave * window)) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1.0 / sample_rate)
    low, high = min(W.PITCHES.values()) * 0.6, max(W.PITCHES.values()) * 1.6
    inside = (freqs >= low) & (freqs <= high)
    peak = float(freqs[inside][spectrum[inside].argmax()])
    pitch = min(W.PITCHES, key=lambda p: abs(np.log(W.PITCHES[p] / peak)))
    fundamental = _band_energy(spectrum, freqs, peak, 0.05)
    odd = sum(_band_energy(spectrum, freqs, k * peak, 0.05) for k in (3, 5) if k * peak < sample_rate / 2)
    sound = "buzz" if odd > 0.02 * fundamental else "beep"
    return pitch, sound


def read_audio(wave: Any, sample_rate: int | None = None) -> dict[str, str]:
    """``{pitch1, sound1, pitch2, sound2}`` of a world sound (``[samples]`` or ``[1, samples]``
    array with ``sample_rate``, or a clip with ``waveform`` and ``sample_rate`` attributes)."""
    if hasattr(wave, "waveform"):
        sample_rate = wave.sample_rate
        wave = wave.waveform
    samples = np.asarray(wave, dtype=np.float64)
    samples = samples.mean(0) if samples.ndim == 2 else samples
    rate = int(sample_rate or W.SAMPLE_RATE)
    duration = len(samples) / rate
    out: dict[str, str] = {}
    for k, (start, end) in enumerate(_TONE_WINDOWS, start=1):
        scale = duration / W.AUDIO_SECONDS
        piece = samples[int(start * scale * rate) : max(int(end * scale * rate), int(start * scale * rate) + 64)]
        out[f"pitch{k}"], out[f"sound{k}"] = _read_tone(piece, rate)
    return {name: out[name] for name in W.ATTRIBUTE_NAMES["audio"]}


# -- any modality -----------------------------------------------------------------------------------


def read(modality: str, media: Any) -> dict[str, str]:
    """The attributes of ``media`` of ``modality`` (``image`` / ``audio`` / ``video``)."""
    readers = {"image": read_image, "audio": read_audio, "video": read_video}
    if modality not in readers:
        raise ValueError(f"the world reader has no modality {modality!r} (known: {', '.join(readers)})")
    return readers[modality](media)


def score(reading: dict[str, str], concept: W.Concept) -> dict[str, bool]:
    """Per attribute, whether ``reading`` recovers ``concept``'s value; ``all`` for every one."""
    hits = {name: reading.get(name) == value for name, value in concept.fields.items()}
    return {**hits, "all": all(hits.values())}


def accuracy(scores: Sequence[dict[str, bool]]) -> dict[str, float]:
    """Mean of each key of `score`'s results (``nan`` for none)."""
    if not scores:
        return {}
    return {name: float(np.mean([s[name] for s in scores])) for name in scores[0]}


def load_media(modality: str, path: str | Path) -> Any:
    """A world file as the reader takes it, through the modality plugin's loader."""
    if modality == "image":
        from nextgpt_image.media import load_image

        return load_image(path)
    if modality == "audio":
        from nextgpt_audio.media import load_audio

        return load_audio(path)
    from nextgpt_video.media import load_video

    return load_video(path)


def read_world_files(root: str | Path, splits: Sequence[str] = ("train", "heldout")) -> dict[str, dict[str, float]]:
    """The reader's accuracy on the ground-truth media of a generated world at ``root`` (every
    file its pair files name), per modality and attribute, with the number of files read."""
    from toy_world.generate import PAIR_FILES

    root = Path(root)
    out: dict[str, dict[str, float]] = {}
    for modality, name in PAIR_FILES.items():
        scores = []
        for split in splits:
            folder = root / split
            for record in json.loads((folder / name).read_text()):
                concept = W.concept_from_caption(modality, record["caption"])
                media = load_media(modality, folder / record[f"{modality}_name"])
                scores.append(score(read(modality, media), concept))
        out[modality] = {**accuracy(scores), "n": len(scores)}
    return out
