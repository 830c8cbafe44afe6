"""Records of the released NExT-GPT data formats, validated with pydantic, and their readers.

Formats (file names and keys as released):

* **pairs** (stages 1 and 2): a JSON list of ``{"caption", "id", "<modality>_name"}`` objects,
  e.g. cc3m ``{caption, id, image_name}``, webvid ``{caption, id, video_name}``, audiocap
  ``{audio_id, audio_name, caption}``. The modality is read from the ``<modality>_name`` key, so
  a new modality's pairs need no new code.
* **instruction** (stage 3): a JSON list of ``{"conversations": [{"from": "human"|"gpt",
  "value": ...}], "<m>_captions": [...], "<m>": file | [files], ...}``. In a human turn the
  modality's placeholder (``<image>``) takes the next listed input file of that modality; in a
  gpt turn it marks an output of that modality, whose caption is the next of ``<m>_captions``.
* **mosit**: the same, with media inline as ``<Image>name.jpg</Image>`` (the tag is the
  modality's name capitalised): an input in a human turn, an output in a gpt turn.

Every record becomes a `SampleRecord`: template turns (inputs as placeholders, outputs as the
modality's placeholder inside assistant text; the training module replaces it with the
model's signal tokens, whose count the model config may change), the input files in order, and
the caption of each modality's first output. A record that fails validation is a `BadRecord`
naming the file and the record index; ``on_bad_record`` decides whether it is skipped (with a
warning and a count) or fatal.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nextgpt.config import StrictModel, format_validation_error
from nextgpt.errors import ConfigError
from nextgpt.files import file_problem
from nextgpt.interfaces import ModalitySpec
from nextgpt.templates import Turn

log = logging.getLogger(__name__)

OnBadRecord = Literal["skip", "error"]


class DataError(ConfigError):
    """A data file or record is invalid; the message names the file and the record index."""


# -- raw records -----------------------------------------------------------------------------------


class PairRecord(BaseModel):
    """One X-caption pair. ``model_validate(raw, context={"modalities": [...]})`` reads the
    modality from the single ``<modality>_name`` key of ``raw``."""

    model_config = ConfigDict(extra="ignore")

    caption: str = Field(min_length=1)
    modality: str
    media: str = Field(min_length=1)
    id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_released(cls, raw: Any, info: Any) -> Any:
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
        if "modality" in raw and "media" in raw:
            return raw
        known = set((info.context or {}).get("modalities", ()))
        names = [k for k in raw if k.endswith("_name") and (not known or k.removesuffix("_name") in known)]
        if len(names) != 1:
            found = [k for k in raw if k.endswith("_name")]
            raise ValueError(
                f"expected exactly one '<modality>_name' key of an enabled modality ({sorted(known)}), found {found}"
            )
        modality = names[0].removesuffix("_name")
        ident = raw.get("id", raw.get(f"{modality}_id"))
        return {
            "caption": raw.get("caption"),
            "modality": modality,
            "media": raw[names[0]],
            "id": None if ident is None else str(ident),
        }

    @field_validator("caption")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("caption is blank")
        return value.strip()


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    role: Literal["human", "gpt"] = Field(alias="from")
    value: str


class InstructionRecord(BaseModel):
    """One dialogue: ``conversations`` plus, per modality, its captions and input files."""

    model_config = ConfigDict(extra="ignore")

    conversations: list[Message] = Field(min_length=2)
    captions: dict[str, list[str]] = Field(default_factory=dict)
    inputs: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_released(cls, raw: Any, info: Any) -> Any:
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
        known = list((info.context or {}).get("modalities", ()))
        conversations = raw.get("conversations", raw.get("conversation"))
        captions: dict[str, Any] = {}
        inputs: dict[str, list[Any]] = {}
        for name in known:
            if f"{name}_captions" in raw:
                captions[name] = raw[f"{name}_captions"]
            for key in (name, f"{name}_name", f"{name}_names"):
                if key in raw and raw[key] is not None:
                    value = raw[key]
                    inputs.setdefault(name, []).extend(value if isinstance(value, list) else [value])
        return {"conversations": conversations, "captions": captions, "inputs": inputs}

    @field_validator("conversations")
    @classmethod
    def _alternate(cls, value: list[Message]) -> list[Message]:
        for index, message in enumerate(value):
            expected = "human" if index % 2 == 0 else "gpt"
            if message.role != expected:
                raise ValueError(
                    f"conversations[{index}] is from {message.role!r}, expected {expected!r} "
                    "(turns alternate, human first)"
                )
        if value[-1].role != "gpt":
            raise ValueError("the last turn must be the assistant's ('gpt')")
        return value


# -- what a reader yields -------------------------------------------------------------------------


class MediaRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    modality: str
    path: Path


class SampleRecord(BaseModel):
    """A training sample before its media are loaded.

    ``turns`` hold input placeholders where media are spliced, and the modality's placeholder
    inside assistant turns where the answer must emit that modality's signal tokens.
    ``targets`` maps a modality to the caption of its first output (the alignment target).
    """

    model_config = ConfigDict(frozen=True)

    turns: list[Turn]
    inputs: list[MediaRef] = Field(default_factory=list)
    targets: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, MediaRef] = Field(default_factory=dict)
    """Modality -> the file of its first output, where the data has one (the pair's media in
    ``generate`` pairs, an existing inline file in a gpt turn): the diffusion loss's target."""
    source: str = ""
    """``file:index`` of the record, for messages."""


class BadRecord(BaseModel):
    file: str
    index: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: record {self.index}: {self.reason}"


class DatasetSource(StrictModel):
    """One data file and how to read it."""

    path: str
    """The JSON file."""
    format: Literal["pairs", "instruction", "mosit"] = "pairs"
    root: str | None = None
    """Folder that media names are relative to (default: the JSON file's folder). No media path
    may resolve outside it."""
    task: Literal["caption", "generate"] = "caption"
    """For pairs: ``caption`` (stage 1: media in, caption out) or ``generate`` (stage 2:
    caption in, caption plus the modality's signal tokens out)."""
    prompt: str = "Generate a caption."
    """The user's request for ``caption`` pairs, after the media placeholder."""
    check_files: bool = True
    """Check that each media file exists (a missing file is a bad record)."""
    limit: int | None = Field(default=None, gt=0)
    """Read at most this many records (after skipping bad ones)."""


# -- readers --------------------------------------------------------------------------------------


def inline_tag_pattern(specs: Mapping[str, ModalitySpec]) -> re.Pattern[str]:
    """Matches MosIT's inline media, ``<Image>name.jpg</Image>``, for every enabled modality."""
    tags = {spec.name.capitalize(): spec.name for spec in specs.values()}
    alternatives = "|".join(re.escape(t) for t in sorted(tags, key=len, reverse=True)) or r"(?!x)x"
    return re.compile(rf"<({alternatives})>\s*(.*?)\s*</\1>", re.DOTALL)


def safe_media_path(root: Path, name: str, spec: ModalitySpec, check_exists: bool) -> Path:
    """``root / name`` resolved; raises ValueError if it escapes ``root``, has a suffix the
    modality cannot load, or (with ``check_exists``) does not exist."""
    try:
        root = root.resolve()
        path = (root / name).resolve()
    except (OSError, RuntimeError) as exc:  # a symbolic-link loop (RuntimeError before Python 3.13)
        raise ValueError(f"media path {name!r} cannot be resolved: {exc}") from exc
    if not path.is_relative_to(root):
        raise ValueError(f"media path {name!r} escapes the dataset root {str(root)!r}")
    if path.suffix.lower() not in spec.extensions:
        raise ValueError(f"media path {name!r}: not a {spec.name} file (expected {', '.join(spec.extensions)})")
    if check_exists:
        problem = file_problem(path)
        if problem is not None:
            raise ValueError(f"media file {str(path)!r}: {problem}")
    return path


def pair_to_sample(
    record: PairRecord, source: DatasetSource, root: Path, spec: ModalitySpec, where: str
) -> SampleRecord:
    path = safe_media_path(root, record.media, spec, source.check_files)
    placeholder = spec.signal_tokens.placeholder
    if source.task == "caption":
        turns = [
            Turn(role="user", text=f"{placeholder} {source.prompt}".strip()),
            Turn(role="assistant", text=record.caption),
        ]
        return SampleRecord(turns=turns, inputs=[MediaRef(modality=spec.name, path=path)], source=where)
    turns = [Turn(role="user", text=record.caption), Turn(role="assistant", text=f"{record.caption} {placeholder}")]
    return SampleRecord(
        turns=turns,
        targets={spec.name: record.caption},
        outputs={spec.name: MediaRef(modality=spec.name, path=path)},
        source=where,
    )


def instruction_to_sample(
    record: InstructionRecord, source: DatasetSource, root: Path, specs: Mapping[str, ModalitySpec], where: str
) -> SampleRecord:
    tag_pattern = inline_tag_pattern(specs)
    by_tag = {spec.name.capitalize(): spec for spec in specs.values()}
    by_placeholder = {spec.signal_tokens.placeholder: spec for spec in specs.values()}
    placeholder_re = re.compile(
        "|".join(re.escape(p) for p in sorted(by_placeholder, key=len, reverse=True)) or r"(?!x)x"
    )
    pending_inputs = {name: list(files) for name, files in record.inputs.items()}
    captions = {name: list(values) for name, values in record.captions.items()}
    inputs: list[MediaRef] = []
    targets: dict[str, str] = {}
    outputs: dict[str, MediaRef] = {}
    turns: list[Turn] = []

    for index, message in enumerate(record.conversations):
        is_input = message.role == "human"
        pieces: list[str] = []
        cursor = 0
        # one pass over inline tags and bare placeholders, in order of position
        tokens = sorted(
            [(m.start(), m.end(), by_tag[m.group(1)], m.group(2)) for m in tag_pattern.finditer(message.value)]
            + [(m.start(), m.end(), by_placeholder[m.group(0)], None) for m in placeholder_re.finditer(message.value)],
            key=lambda t: t[0],
        )
        for start, end, spec, name in tokens:
            if start < cursor:
                continue  # a placeholder inside an inline tag's text
            pieces.append(message.value[cursor:start])
            cursor = end
            if is_input:
                if name is None:
                    if not pending_inputs.get(spec.name):
                        raise ValueError(
                            f"conversations[{index}]: {spec.signal_tokens.placeholder} has no listed {spec.name} file"
                        )
                    name = str(pending_inputs[spec.name].pop(0))
                inputs.append(MediaRef(modality=spec.name, path=safe_media_path(root, name, spec, source.check_files)))
            else:
                caption = captions.get(spec.name, [])
                if caption:
                    targets.setdefault(spec.name, caption.pop(0))
                if name is not None and spec.name not in outputs:
                    try:  # an output file is optional: only a target for the diffusion loss
                        outputs[spec.name] = MediaRef(modality=spec.name, path=safe_media_path(root, name, spec, True))
                    except ValueError:
                        pass
            pieces.append(spec.signal_tokens.placeholder)
        pieces.append(message.value[cursor:])
        turns.append(Turn(role="user" if is_input else "assistant", text="".join(pieces).strip()))
    unused = {name: files for name, files in pending_inputs.items() if files}
    if unused:
        raise ValueError(f"input files {unused} are listed but no placeholder refers to them")
    return SampleRecord(turns=turns, inputs=inputs, targets=targets, outputs=outputs, source=where)


def read_records(
    source: DatasetSource, specs: Mapping[str, ModalitySpec], on_bad_record: OnBadRecord = "skip"
) -> tuple[list[SampleRecord], list[BadRecord]]:
    """Read and validate every record of ``source``.

    Returns ``(samples, bad)``. With ``on_bad_record="error"`` the first bad record raises a
    `DataError` naming the file and index; with ``"skip"`` each is logged, a warning gives the
    count, and the bad records are returned.
    """
    path = Path(source.path).expanduser()
    raw = read_json_file(path, "data file")
    if not isinstance(raw, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(raw).__name__}")
    root = Path(source.root).expanduser() if source.root else path.parent
    context = {"modalities": list(specs)}
    samples: list[SampleRecord] = []
    bad: list[BadRecord] = []
    for index, item in enumerate(raw):
        if source.limit is not None and len(samples) >= source.limit:
            break
        where = f"{path}:{index}"
        try:
            if source.format == "pairs":
                pair = PairRecord.model_validate(item, context=context)
                samples.append(pair_to_sample(pair, source, root, specs[pair.modality], where))
            else:
                dialogue = InstructionRecord.model_validate(item, context=context)
                samples.append(instruction_to_sample(dialogue, source, root, specs, where))
        except ValidationError as exc:
            reason = format_validation_error(exc).removeprefix("invalid configuration:\n  ").replace("\n  ", "; ")
            bad.append(_bad(path, index, reason, on_bad_record))
        except (ValueError, KeyError) as exc:
            bad.append(_bad(path, index, str(exc), on_bad_record))
    if bad:
        shown = "; ".join(str(b) for b in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        warnings.warn(f"{path}: skipped {len(bad)} bad record(s) of {len(raw)}: {shown}{more}", stacklevel=2)
    return samples, bad


def read_json_file(path: Path, what: str) -> Any:
    """The JSON content of ``path`` (UTF-8, a byte-order mark allowed); a `DataError` naming the
    file says why it cannot be read: missing, a folder, unreadable, not UTF-8, not JSON."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: the {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}, line {line})"
        ) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: the {what} is not valid JSON: {exc}") from exc


def _bad(path: Path, index: int, reason: str, on_bad_record: OnBadRecord) -> BadRecord:
    record = BadRecord(file=str(path), index=index, reason=reason)
    if on_bad_record == "error":
        raise DataError(str(record))
    log.warning("skipping bad record: %s", record)
    return record
