"""Translators between OpenAI chat content parts and the Hugging Face chat format `generate` reads.

Input parts, for any installed modality ``m`` (no modality is named here):

- ``{"type": "text", "text": ...}``
- ``{"type": "<m>_url", "<m>_url": {"url": "data:<mime>;base64,..."}}``: OpenAI's ``image_url``,
  and the same form for the others (``audio_url``, ``video_url``, ``3d_url``), as vLLM's
  multimodal serving writes them;
- ``{"type": "input_<m>", "input_<m>": {"data": "<base64>", "format": "<ext>"}}``: OpenAI's
  ``input_audio``, and the same form for the others.

Only data URLs are read (a server never fetches a URL it is given). Each file is written to the
request's own folder and read by its modality's loader, whose error text reaches the client.

Output: the answer's text as a ``text`` part and each generated item as a ``<m>_url`` part with a
data URL of the written file (its MIME type from its suffix); a modality whose spec names an
OpenAI message field (`ModalitySpec.openai_message_field`, e.g. ``audio``) fills that field too,
as OpenAI's ``message.audio`` does.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nextgpt.errors import MediaError
from nextgpt.suggest import hint, listing

if TYPE_CHECKING:
    from nextgpt.generation import GeneratedMedia, GenerationOutput
    from nextgpt.interfaces import ModalitySpec
    from nextgpt.serving.settings import ServeSettings

mimetypes.add_type("model/ply", ".ply")  # not in every system's table
mimetypes.add_type("audio/wav", ".wav")


class RequestError(Exception):
    """A request the server refuses, with its HTTP status and OpenAI error fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        kind = {401: "authentication_error", 404: "not_found_error", 503: "server_overloaded"}.get(
            self.status, "invalid_request_error" if self.status < 500 else "server_error"
        )
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


@dataclass
class DecodedFile:
    """One media file a request carried, written to the request's folder."""

    modality: str
    path: Path


def part_modality(kind: str, installed: dict[str, ModalitySpec]) -> str | None:
    """The modality a content part's type names (``image_url`` and ``input_image`` name
    ``image``), or None when it names none."""
    for name in installed:
        if kind in (f"{name}_url", f"input_{name}"):
            return name
    return None


def known_part_types(installed: dict[str, ModalitySpec]) -> list[str]:
    return ["text", *(f"{n}_url" for n in installed), *(f"input_{n}" for n in installed)]


def decode_data_url(url: Any, where: str, max_bytes: int) -> tuple[str | None, bytes]:
    """The MIME type and bytes of a base64 data URL; `RequestError` 400 for anything else,
    413 beyond ``max_bytes``."""
    if not isinstance(url, str):
        raise RequestError(400, f"{where}: expected a data URL string, got {type(url).__name__}", where)
    if re.match(r"^[a-z]+://", url):
        raise RequestError(
            400, f"{where}: only data URLs (data:<mime>;base64,...) are accepted, not {url[:40]!r}", where
        )
    header, comma, data = url.partition(",")
    params = header.removeprefix("data:").split(";")
    if not url.startswith("data:") or not comma or "base64" not in params[1:]:
        raise RequestError(400, f"{where}: malformed data URL: expected data:<mime>;base64,<data>", where)
    return params[0] or None, decode_base64(data, where, max_bytes)


def decode_base64(data: Any, where: str, max_bytes: int) -> bytes:
    if not isinstance(data, str):
        raise RequestError(400, f"{where}: expected base64 text, got {type(data).__name__}", where)
    if len(data) * 3 // 4 > max_bytes + 3:
        raise RequestError(413, f"{where}: the file is larger than the limit of {max_bytes} bytes", where, "too_large")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{where}: malformed data URL: the data is not valid base64", where) from None
    if not raw:
        raise RequestError(400, f"{where}: the file is empty", where)
    if len(raw) > max_bytes:
        raise RequestError(413, f"{where}: the file is larger than the limit of {max_bytes} bytes", where, "too_large")
    return raw


def file_suffix(spec: ModalitySpec, mime: str | None, fmt: str | None, where: str) -> str:
    """The file suffix for a part's MIME type or ``format``, among those the modality reads."""
    candidates = [f".{fmt.lower().lstrip('.')}"] if fmt else []
    if mime:
        candidates += mimetypes.guess_all_extensions(mime) + [f".{mime.split('/')[-1].lower()}"]
        candidates += [f".{mime.split('/')[-1].lower().removeprefix('x-')}"]
    for suffix in candidates:
        if suffix in spec.extensions:
            return suffix
    given = f"format {fmt!r}" if fmt else f"MIME type {mime!r}"
    raise RequestError(
        400, f"{where}: {given} is not a {spec.name} format this server reads ({', '.join(spec.extensions)})", where
    )


def write_part(
    part: dict[str, Any],
    kind: str,
    modality: str,
    spec: ModalitySpec,
    folder: Path,
    where: str,
    settings: ServeSettings,
) -> DecodedFile:
    """Decode a media part into a file in ``folder``."""
    body = part.get(kind)
    if kind.endswith("_url"):
        url = body.get("url") if isinstance(body, dict) else body
        mime, raw = decode_data_url(url, f"{where}.{kind}.url", settings.max_media_bytes)
        suffix = file_suffix(spec, mime, None, where)
    else:
        if not isinstance(body, dict) or "data" not in body:
            raise RequestError(400, f"{where}.{kind}: expected {{'data': <base64>, 'format': <ext>}}", where)
        raw = decode_base64(body["data"], f"{where}.{kind}.data", settings.max_media_bytes)
        suffix = file_suffix(spec, None, str(body.get("format") or ""), where)
    path = folder / f"{where.replace('[', '_').replace(']', '').replace('.', '_')}{suffix}"
    path.write_bytes(raw)
    return DecodedFile(modality, path)


def load_checked(decoded: DecodedFile, spec: ModalitySpec, where: str, settings: ServeSettings) -> Any:
    """Read a decoded file with its modality's loader and check it against the limits."""
    try:
        item = spec.load(decoded.path)
    except MediaError as exc:
        raise RequestError(400, f"{where}: {exc.reason}", where, "invalid_media") from None
    except Exception as exc:  # a plugin's loader failing in a way it did not foresee
        raise RequestError(400, f"{where}: cannot read this {spec.name} file ({type(exc).__name__})", where) from None
    if spec.measure is not None:
        extent = spec.measure(item)
        if extent.pixels is not None and extent.pixels > settings.max_pixels:
            raise RequestError(
                413, f"{where}: {extent.pixels} pixels is over the limit of {settings.max_pixels}", where, "too_large"
            )
        if extent.seconds is not None and extent.seconds > settings.max_seconds:
            raise RequestError(
                413,
                f"{where}: {extent.seconds:.1f} s is over the limit of {settings.max_seconds} s",
                where,
                "too_large",
            )
    return item


def to_hf_messages(
    messages: list[dict[str, Any]], specs: dict[str, ModalitySpec], folder: Path, settings: ServeSettings
) -> tuple[list[dict[str, Any]], list[str]]:
    """OpenAI chat messages as Hugging Face chat messages (media loaded), and the modalities read.
    System messages become text at the start of the next user message."""
    out: list[dict[str, Any]] = []
    system: list[str] = []
    read: list[str] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role")
        content = message.get("content")
        if role not in ("system", "developer", "user", "assistant"):
            raise RequestError(400, f"{where}.role: expected user, assistant or system, got {role!r}", f"{where}.role")
        if content is None and role == "assistant":
            content = ""
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise RequestError(400, f"{where}.content: expected a string or a list of parts", f"{where}.content")
        converted: list[dict[str, Any]] = []
        for part_index, part in enumerate(parts):
            at = f"{where}.content[{part_index}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                converted.append({"type": "text", "text": str(part.get("text", ""))})
                continue
            modality = part_modality(kind, specs) if isinstance(kind, str) else None
            if modality is None:
                known = known_part_types(specs)
                raise RequestError(
                    400,
                    f"{at}.type: unknown part type {kind!r}{hint(str(kind), known)} "
                    f"(this model reads: {listing(known)})",
                    f"{at}.type",
                    "unknown_modality",
                )
            if role != "user":
                raise RequestError(400, f"{at}: media parts are only read in user messages", at)
            decoded = write_part(part, kind, modality, specs[modality], folder, at, settings)
            converted.append({"type": modality, "media": load_checked(decoded, specs[modality], at, settings)})
            read.append(modality)
        if role in ("system", "developer"):
            system += [p["text"] for p in converted if p.get("text")]
            continue
        if role == "user" and system:
            converted.insert(0, {"type": "text", "text": "\n".join(system)})
            system = []
        out.append({"role": role, "content": converted})
    return out, read


def media_url(path: Path) -> tuple[str, str]:
    """The MIME type of a written file and its data URL."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return mime, f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def media_part(item: GeneratedMedia) -> dict[str, Any]:
    """A generated item as an OpenAI-style content part with a data URL."""
    assert item.path is not None
    mime, url = media_url(item.path)
    return {"type": f"{item.modality}_url", f"{item.modality}_url": {"url": url, "mime_type": mime}}


def message_fields(item: GeneratedMedia, spec: ModalitySpec, transcript: str) -> dict[str, Any]:
    """The OpenAI message field the item's modality declares (e.g. ``audio``), or nothing."""
    if not spec.openai_message_field or item.path is None:
        return {}
    data = base64.b64encode(item.path.read_bytes()).decode("ascii")
    field = {"id": f"{item.modality}_{uuid.uuid4().hex[:16]}", "data": data, "transcript": transcript}
    field.update(format=item.path.suffix.lstrip("."), expires_at=0)
    return {spec.openai_message_field: field}


def to_openai_message(output: GenerationOutput, specs: dict[str, ModalitySpec]) -> dict[str, Any]:
    """The assistant message: text alone as a string, with media as a list of content parts."""
    message: dict[str, Any] = {"role": "assistant", "content": output.text}
    if output.media:
        parts: list[dict[str, Any]] = [{"type": "text", "text": output.text}] if output.text else []
        parts += [media_part(item) for item in output.media]
        message["content"] = parts
        for item in output.media:
            message.update(message_fields(item, specs[item.modality], output.text))
    return message
