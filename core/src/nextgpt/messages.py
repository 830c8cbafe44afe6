"""Chat messages in the Hugging Face multimodal format, reduced to text turns plus media.

A message is ``{"role": "user"|"assistant", "content": str | [part, ...]}`` where a part is
``{"type": "text", "text": ...}`` or ``{"type": <modality>, "path": ...}`` (``"media"`` may hold an
already loaded item instead of a path). A media part of a user message is an input: it becomes its
modality's placeholder in the text, at its position, and its item is encoded. A media part of an
assistant message is an output the model made earlier in the conversation: it becomes the
modality's signal tokens, as the model wrote them and as training wrote every answer's outputs
(`nextgpt.training.targets.OutputTurns`); its file is not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nextgpt.errors import ConfigError, MediaError
from nextgpt.interfaces import ModalitySpec
from nextgpt.templates import Turn


@dataclass
class MediaInput:
    """One media item of a conversation, loaded."""

    modality: str
    media: Any
    path: Path | None = None


def placeholder_pattern(specs: dict[str, ModalitySpec]) -> re.Pattern[str]:
    """A regex matching any enabled modality's placeholder."""
    alternatives = sorted((re.escape(s.signal_tokens.placeholder) for s in specs.values()), key=len, reverse=True)
    return re.compile("|".join(alternatives) if alternatives else r"(?!x)x")


def parse_messages(
    messages: list[dict[str, Any]], specs: dict[str, ModalitySpec], resolve_modality: Any
) -> tuple[list[Turn], list[MediaInput]]:
    """Turn chat messages into template turns and the list of media in order of appearance.

    Args:
        messages: the conversation, Hugging Face chat format.
        specs: the enabled modalities by name.
        resolve_modality: ``name -> ModalitySpec``; raises for a modality no plugin provides.

    Raises:
        UnknownModalityError: a part's type names a modality that is not installed or enabled.
        MediaError: a media file is missing or unreadable (the message names it).
        ConfigError: a malformed message, or a placeholder typed in text with no media for it.
    """
    pattern = placeholder_pattern(specs)
    turns: list[Turn] = []
    media: list[MediaInput] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ConfigError(f"messages[{index}]: expected a dict with 'role' and 'content'")
        content = message["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        pieces: list[str] = []
        for part_index, part in enumerate(parts):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                text = str(part.get("text", ""))
                stray = pattern.search(text)
                if stray:
                    raise ConfigError(
                        f"messages[{index}].content[{part_index}]: placeholder {stray.group(0)!r} in text; "
                        f"attach the file as a {{'type': ..., 'path': ...}} part instead"
                    )
                pieces.append(text)
                continue
            if not isinstance(kind, str):
                raise ConfigError(f"messages[{index}].content[{part_index}]: a part needs a 'type'")
            spec = resolve_modality(kind)
            if kind not in specs:
                raise ConfigError(f"messages[{index}]: modality {kind!r} is installed but not enabled in this model")
            if message["role"] == "assistant":  # an output the model made: what it wrote was the signal tokens
                pieces.append("".join(spec.signal_tokens.tokens))
                continue
            media.append(_load_part(spec, part, f"messages[{index}].content[{part_index}]"))
            pieces.append(spec.signal_tokens.placeholder)
        turns.append(Turn(role=message["role"], text=" ".join(p for p in pieces if p)))
    return turns, media


def _load_part(spec: ModalitySpec, part: dict[str, Any], where: str) -> MediaInput:
    if "media" in part:
        return MediaInput(spec.name, part["media"], None)
    raw = part.get("path") or part.get("url")
    if raw is None:
        raise ConfigError(f"{where}: a {spec.name} part needs 'path' (or 'media')")
    path = Path(str(raw).removeprefix("file://")).expanduser()
    if path.suffix.lower() not in spec.extensions:
        raise MediaError(path, f"not a supported {spec.name} file (expected {', '.join(spec.extensions)})")
    return MediaInput(spec.name, spec.load(path), path)
