"""Reading and writing image files with Pillow.

`load_image` returns a fully decoded RGB `PIL.Image.Image` and turns every kind of bad input
(missing, empty, truncated, mislabelled file, unsupported suffix, a folder or an unreadable
file, an image too large to decode) into a `nextgpt.errors.MediaError` naming the file.
`save_image` writes PNG, the lossless format the image modality generates.

Large images: an image whose longer side exceeds ``max_side`` (default `DEFAULT_MAX_SIDE`) is
downscaled to it. JPEG files are reduced while decoding (Pillow's ``draft``: the decoder scales
by 1/2, 1/4 or 1/8, so the full-size image is never decoded); other formats are reduced right
after decoding (``reduce``, then a resample). An image that would still need more than
``max_pixels`` pixels decoded (default `DEFAULT_MAX_PIXELS`, or the environment variable
``NEXTGPT_MAX_IMAGE_PIXELS``) is refused as "too large" before anything is decoded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from nextgpt.errors import ConfigError, MediaError
from nextgpt.files import check_media_file
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")
"""Suffixes `load_image` accepts (lower case)."""

_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
"""The Pillow format each suffix promises; a file whose content differs is mislabelled."""

DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
"""The most pixels `load_image` decodes (an 8192 x 8192 image; about 200 MB as RGB)."""
MAX_PIXELS_ENV = "NEXTGPT_MAX_IMAGE_PIXELS"
"""Environment variable that replaces `DEFAULT_MAX_PIXELS`."""
DEFAULT_MAX_SIDE = 4096
"""Loaded images are downscaled so that their longer side is at most this (encoders need far less)."""


def max_image_pixels() -> int:
    """The pixel limit: ``NEXTGPT_MAX_IMAGE_PIXELS`` if set, else `DEFAULT_MAX_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{MAX_PIXELS_ENV}={raw!r}: expected a positive number of pixels")
    return value


def load_image(path: str | Path, max_pixels: int | None = None, max_side: int = DEFAULT_MAX_SIDE) -> Image.Image:
    """Read an image file and return it as a fully loaded RGB image.

    Args:
        path: a ``.png``, ``.jpg``/``.jpeg`` or ``.webp`` file.
        max_pixels: refuse images that need more pixels decoded (default: `max_image_pixels`).
        max_side: downscale images whose longer side is larger (JPEG while decoding).

    Raises:
        MediaError: naming the file, when it is missing, empty, truncated or corrupt, a folder
            or unreadable, too large, when its content is another format than its suffix
            says, or when the suffix is unsupported.
    """
    path = Path(path)
    check_media_file(path, IMAGE_EXTENSIONS, "image")
    expected = _FORMATS[path.suffix.lower()]
    limit = max_image_pixels() if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():  # the size is checked below, with a clearer message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise MediaError(path, f"image too large to decode: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise MediaError(path, "not a readable image (unknown or corrupt content)") from exc
    except OSError as exc:
        raise MediaError(path, f"cannot read: {exc.strerror or exc}") from exc
    with image:
        if image.format != expected:
            raise MediaError(path, f"content is {image.format}, not {expected} as its suffix {path.suffix!r} says")
        full = image.size
        if max(full) > max_side:
            scale = max_side / max(full)
            image.draft("RGB", (max(1, int(full[0] * scale)), max(1, int(full[1] * scale))))  # JPEG only
        width, height = image.size
        if width * height > limit:
            raise MediaError(
                path,
                f"image too large: {full[0]} x {full[1]} = {full[0] * full[1]:,} pixels to decode, above the "
                f"limit of {limit:,} (set {MAX_PIXELS_ENV} to change it)",
            )
        try:
            image.load()
            if max(image.size) > max_side:
                image.thumbnail((max_side, max_side))  # integer reduce first, then a resample
            return image.convert("RGB")
        except Exception as exc:  # Pillow signals truncation with OSError, SyntaxError, zlib errors...
            raise MediaError(path, f"truncated or corrupt image: {exc}") from exc


def save_image(image: Image.Image | np.ndarray, path: str | Path) -> Path:
    """Write an image as PNG and return the path written.

    Args:
        image: a PIL image (converted to RGB, or RGBA kept), or a ``uint8`` array ``[H, W, 3]``.
        path: destination; a missing suffix becomes ``.png``; parent folders are created.

    Raises:
        MediaError: when ``path`` has another suffix than ``.png`` (the file would be
            mislabelled) or ``image`` is not an image.
    """
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".png")
    if path.suffix.lower() != ".png":
        raise MediaError(path, "images are saved as PNG; use a .png suffix")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise MediaError(path, f"expected a uint8 array [H, W, 3], got {image.dtype} {list(image.shape)}")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise MediaError(path, f"expected a PIL image, got {type(image).__name__}")
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
