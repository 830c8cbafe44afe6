"""Where a model runs: device names as commands and ``from_pretrained`` take them.

``auto`` picks the first CUDA GPU when torch sees one, else the CPU; ``cpu``, ``cuda`` and
``cuda:N`` name a device directly (``mps`` too where torch has it). A name torch does not know,
or a GPU that is not there, is a `ConfigError` naming the option it came from, so a command
fails in a second instead of after loading a 7B model onto the wrong device.
"""

from __future__ import annotations

import re

import torch

from nextgpt.errors import ConfigError
from nextgpt.suggest import hint

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N", "mps")
"""What a device option takes (``cuda:N`` is a GPU's index)."""

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def resolve_device(
    device: str | torch.device | None, option: str = "device", *, present: bool = True
) -> torch.device | None:
    """The torch device ``device`` names (None stays None: the caller's default).

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, or a `torch.device`.
        option: the option or argument it came from, named in errors (``--device``).
        present: require the device to be on this machine (False: only the name is checked,
            as for a memory plan made for a GPU elsewhere).

    Raises:
        ConfigError: an unknown name, or a device this machine does not have.
    """
    if device is None:
        return None
    text = str(device).strip().lower()
    match = _DEVICE_PATTERN.match(text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        suggestion = "; did you mean 'cuda'?" if text.startswith("gpu") else hint(text, ["auto", "cpu", "cuda", "mps"])
        raise ConfigError(
            f"{option}: {str(device)!r} is not a device{suggestion} (expected one of {', '.join(DEVICE_NAMES)})"
        )
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if not present:
        return torch.device(kind, int(index)) if index is not None else torch.device(kind)
    if kind == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"{option}: mps is not available on this machine (use cpu or auto)")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"{option}: {text} asked for, but torch sees no CUDA GPU here "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use cpu or auto"
        )
    count = torch.cuda.device_count()
    number = int(index) if index is not None else torch.cuda.current_device()
    if number >= count:
        raise ConfigError(f"{option}: {text} asked for, but this machine has {count} GPU(s): cuda:0..cuda:{count - 1}")
    return torch.device("cuda", number)
