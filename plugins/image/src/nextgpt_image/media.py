"""Reading and writing image files with Pillow.

`load_image` returns a fully decoded RGB `PIL.Image.Image` and turns every kind of bad input
(missing, empty, truncated, mislabelled file, unsupported suffix) into a
`nextgpt.errors.MediaError` naming the file. `save_image` writes PNG, the lossless format the
image modality generates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from nextgpt.errors import MediaError
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")
"""Suffixes `load_image` accepts (lower case)."""

_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
"""The Pillow format each suffix promises; a file whose content differs is mislabelled."""


def _check_file(path: Path) -> None:
    """Reject an unsupported suffix, a missing file and an empty file before decoding."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise MediaError(
            path,
            f"unsupported image suffix {suffix or '(none)'!r}; expected one of {IMAGE_EXTENSIONS}",
        )
    if not path.is_file():
        raise MediaError(path, "file not found")
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty")


def load_image(path: str | Path) -> Image.Image:
    """Read an image file and return it as a fully loaded RGB image.

    Args:
        path: a ``.png``, ``.jpg``/``.jpeg`` or ``.webp`` file.

    Raises:
        MediaError: naming the file, when it is missing, empty, truncated or corrupt, when its
            content is another format than its suffix says, or when the suffix is unsupported.
    """
    path = Path(path)
    _check_file(path)
    expected = _FORMATS[path.suffix.lower()]
    try:
        with Image.open(path) as image:
            if image.format != expected:
                raise MediaError(
                    path,
                    f"content is {image.format}, not {expected} as its suffix {path.suffix!r} says",
                )
            image.load()
            return image.convert("RGB")
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise MediaError(path, "not a readable image (unknown or corrupt content)") from None
    except Exception as exc:  # Pillow signals truncation with OSError, SyntaxError, zlib errors...
        raise MediaError(path, f"truncated or corrupt image: {exc}") from None


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
