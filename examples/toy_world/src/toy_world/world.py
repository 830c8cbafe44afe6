"""The toy world's grammar and renderers: coloured shapes at positions (images), two-tone sounds
(audio) and moving shapes (video), each described by a caption built from a few attributes.

Every item is drawn from a caption's attributes plus small random jitter (size, exact place,
shade, pitch, timing), so two items with the same caption differ in their pixels or samples.
Nothing here writes files; `toy_world.generate` does.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 224
VIDEO_SIZE = 224
VIDEO_FRAMES = 8
VIDEO_FPS = 8.0
SAMPLE_RATE = 16000
AUDIO_SECONDS = 1.0

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "white": (235, 235, 235),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.28, 0.28),
    "top right": (0.72, 0.28),
    "bottom left": (0.28, 0.72),
    "bottom right": (0.72, 0.72),
    "center": (0.5, 0.5),
}
"""(x, y) of the shape's centre as a fraction of the image size."""
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
PITCHES: dict[str, float] = {"low": 300.0, "middle": 700.0, "high": 1600.0}
"""Tone frequencies in Hz."""
SOUNDS: tuple[str, ...] = ("beep", "buzz")
"""``beep``: a sine tone; ``buzz``: a square-ish tone rich in harmonics."""

MODALITIES: tuple[str, ...] = ("image", "audio", "video")
BACKGROUND = (16, 16, 16)


# -- captions ---------------------------------------------------------------------------------------


def image_caption(colour: str, shape: str, position: str) -> str:
    where = "in the center" if position == "center" else f"at the {position}"
    return f"a {colour} {shape} {where}"


def video_caption(colour: str, shape: str, direction: str) -> str:
    return f"a {colour} {shape} moving {direction}"


def audio_caption(pitch1: str, sound1: str, pitch2: str, sound2: str) -> str:
    return f"a {pitch1} {sound1} then a {pitch2} {sound2}"


@dataclass(frozen=True)
class Concept:
    """One caption of the world and the attributes it is made of."""

    modality: str
    attributes: tuple[str, ...]

    @property
    def caption(self) -> str:
        return CAPTIONERS[self.modality](*self.attributes)

    @property
    def fields(self) -> dict[str, str]:
        return dict(zip(ATTRIBUTE_NAMES[self.modality], self.attributes, strict=True))


CAPTIONERS = {"image": image_caption, "audio": audio_caption, "video": video_caption}
ATTRIBUTE_NAMES: dict[str, tuple[str, ...]] = {
    "image": ("colour", "shape", "position"),
    "audio": ("pitch1", "sound1", "pitch2", "sound2"),
    "video": ("colour", "shape", "direction"),
}
ATTRIBUTE_VALUES: dict[str, tuple[tuple[str, ...], ...]] = {
    "image": (tuple(COLOURS), SHAPES, tuple(POSITIONS)),
    "audio": (tuple(PITCHES), SOUNDS, tuple(PITCHES), SOUNDS),
    "video": (tuple(COLOURS), SHAPES, tuple(DIRECTIONS)),
}


def concepts(modality: str) -> list[Concept]:
    """Every caption of ``modality``, in a fixed order."""
    return [Concept(modality, attrs) for attrs in itertools.product(*ATTRIBUTE_VALUES[modality])]


def concept_from_caption(modality: str, caption: str) -> Concept:
    for concept in concepts(modality):
        if concept.caption == caption:
            return concept
    raise KeyError(f"{caption!r} is not a {modality} caption of the toy world")


def split_concepts(modality: str, seed: int, heldout_fraction: float) -> tuple[list[Concept], list[Concept]]:
    """``(train, heldout)`` captions of ``modality``: a seeded random ``heldout_fraction`` of the
    attribute combinations is held out, while every attribute value stays in training (held-out
    captions are new *combinations* of known words)."""
    everything = concepts(modality)
    rng = random.Random(f"{seed}-{modality}-split")
    order = list(everything)
    rng.shuffle(order)
    want = max(1, round(heldout_fraction * len(everything))) if heldout_fraction > 0 else 0
    heldout: list[Concept] = []
    for concept in order:
        if len(heldout) >= want:
            break
        rest = [c for c in everything if c not in heldout and c != concept]
        covered = all(
            any(c.attributes[i] == value for c in rest)
            for i, values in enumerate(ATTRIBUTE_VALUES[modality])
            for value in values
        )
        if covered:
            heldout.append(concept)
    train = [c for c in everything if c not in heldout]
    return train, heldout


def cycle_concepts(pool: list[Concept], n: int, rng: random.Random) -> Iterator[Concept]:
    """``n`` concepts covering ``pool`` as evenly as possible, in a shuffled order."""
    out: list[Concept] = []
    while len(out) < n:
        block = list(pool)
        rng.shuffle(block)
        out.extend(block)
    return iter(out[:n])


# -- renderers --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return y, x


def _shape_mask(shape: str, size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    y, x = _grid(size)
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    if shape == "square":  # an outline: a filled square is too like a disc for the tiny encoder
        half, inner = radius * 0.9, radius * 0.5
        return (np.maximum(np.abs(dx), np.abs(dy)) <= half) & (np.maximum(np.abs(dx), np.abs(dy)) > inner)
    if shape == "triangle":  # pointing up
        top, bottom = cy - radius, cy + radius * 0.8
        inside_y = (y >= top) & (y <= bottom)
        half_width = (y - top) / (bottom - top) * radius
        return inside_y & (np.abs(dx) <= half_width)
    if shape == "cross":
        arm = radius * 0.25
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= radius)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= radius))
    raise ValueError(f"unknown shape {shape!r}")


def _shade(colour: str, rng: random.Random) -> np.ndarray:
    base = np.array(COLOURS[colour], dtype=np.float32)
    return np.clip(base + np.array([rng.uniform(-15, 15) for _ in range(3)], dtype=np.float32), 0, 255)


def _canvas(size: int, rng: random.Random) -> np.ndarray:
    """A flat dark background of a slightly varying shade (flat: PNG and H.264 keep it small)."""
    shade = np.array(BACKGROUND, dtype=np.float32) + rng.uniform(-8, 8)
    return np.broadcast_to(shade, (size, size, 3)).copy()


def render_image(concept: Concept, rng: random.Random, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 ``[size, size, 3]``: a shape of the caption's colour at its position, jittered."""
    colour, shape, position = concept.attributes
    fx, fy = POSITIONS[position]
    radius = size * rng.uniform(0.16, 0.2)
    cx = size * (fx + rng.uniform(-0.04, 0.04))
    cy = size * (fy + rng.uniform(-0.04, 0.04))
    pixels = _canvas(size, rng)
    pixels[_shape_mask(shape, size, cx, cy, radius)] = _shade(colour, rng)
    return pixels.round().astype(np.uint8)


def render_video(
    concept: Concept,
    rng: random.Random,
    frames: int = VIDEO_FRAMES,
    size: int = VIDEO_SIZE,
    only: tuple[int, ...] | None = None,
) -> np.ndarray:
    """uint8 ``[frames, size, size, 3]``: a shape crossing the frame in the caption's direction
    (``only``: just those frame indices, drawn from the same random choices)."""
    colour, shape, direction = concept.attributes
    dx, dy = DIRECTIONS[direction]
    radius = size * rng.uniform(0.15, 0.18)
    margin = radius + size * 0.03
    start, end = margin + size * rng.uniform(0, 0.05), size - margin - size * rng.uniform(0, 0.05)
    across = size * (0.5 + rng.uniform(-0.12, 0.12))
    background = _canvas(size, rng)
    shade = _shade(colour, rng)
    indices = list(range(frames)) if only is None else list(only)
    out = np.empty((len(indices), size, size, 3), dtype=np.uint8)
    for k, i in enumerate(indices):
        along = start + (end - start) * i / max(frames - 1, 1)
        if dx < 0 or dy < 0:
            along = size - along
        cx, cy = (along, across) if dx else (across, along)
        pixels = background.copy()
        pixels[_shape_mask(shape, size, cx, cy, radius)] = shade
        out[k] = pixels.round().astype(np.uint8)
    return out


def _tone(pitch: str, sound: str, seconds: float, rng: random.Random, sample_rate: int) -> np.ndarray:
    freq = PITCHES[pitch] * rng.uniform(0.96, 1.04)
    t = np.arange(int(seconds * sample_rate), dtype=np.float64) / sample_rate
    phase = 2 * np.pi * freq * t
    wave = np.sin(phase) if sound == "beep" else np.tanh(4.0 * np.sin(phase))
    ramp = min(len(t) // 2, int(0.01 * sample_rate))
    envelope = np.ones_like(t)
    envelope[:ramp] = np.linspace(0, 1, ramp)
    envelope[len(t) - ramp :] = np.linspace(1, 0, ramp)
    return wave * envelope * rng.uniform(0.3, 0.45)


def render_audio(concept: Concept, rng: random.Random, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 ``[1, samples]`` (1 s): the first tone, a short gap, the second tone."""
    pitch1, sound1, pitch2, sound2 = concept.attributes
    total = int(AUDIO_SECONDS * sample_rate)
    gap = rng.uniform(0.06, 0.12)
    first = rng.uniform(0.36, 0.42)
    lead = rng.uniform(0.0, 0.03)
    second = AUDIO_SECONDS - lead - first - gap - rng.uniform(0.0, 0.03)
    out = np.zeros(total, dtype=np.float64)
    a = _tone(pitch1, sound1, first, rng, sample_rate)
    b = _tone(pitch2, sound2, second, rng, sample_rate)
    i = int(lead * sample_rate)
    out[i : i + len(a)] = a
    j = i + len(a) + int(gap * sample_rate)
    out[j : j + len(b)] = b[: total - j]
    out += np.random.default_rng(rng.randrange(2**32)).normal(0, 0.003, total)
    return out.astype(np.float32)[None, :]
