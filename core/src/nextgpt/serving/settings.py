"""What a server accepts: request and media limits, the queue, the API key (`ServeSettings`),
and the body of ``POST /v1/chat/completions`` (`ChatCompletionRequest`), both pydantic models."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nextgpt.config import DecodeOptions, StrictModel, validate_model

OPENAI_FIELDS_TOLERATED = frozenset(
    {"user", "stream_options", "metadata", "store", "frequency_penalty", "presence_penalty", "logprobs"}
)
"""OpenAI request fields a client may send that change nothing here. The request field named
like a modality's `ModalitySpec.openai_message_field` (OpenAI's voice and format settings of
spoken output) is tolerated too: media come in their decoder's own format."""


class ServeSettings(StrictModel):
    """Limits and access of ``nextgpt serve`` and ``nextgpt web``; each is a command-line option."""

    model_name: str = "nextgpt"
    """The id ``/v1/models`` lists and requests name in ``model``."""
    api_key: str | None = None
    """When set, every ``/v1`` request needs ``Authorization: Bearer <api_key>`` (else 401)."""
    max_request_bytes: int = Field(default=32 * 2**20, gt=0)
    """Largest request body accepted (413 beyond)."""
    max_media_bytes: int = Field(default=16 * 2**20, gt=0)
    """Largest decoded file in one data URL (413 beyond)."""
    max_pixels: int = Field(default=4096 * 4096, gt=0)
    """Most pixels of an input picture or frame, and of a requested output size."""
    max_seconds: float = Field(default=60.0, gt=0)
    """Longest input sound or video, and longest requested output."""
    max_new_tokens: int = Field(default=512, gt=0)
    """Most tokens a request may ask the LLM for."""
    queue_size: int = Field(default=8, ge=1)
    """Requests that may wait for the model; one more gets 503."""
    work_dir: Path | None = None
    """Where each request's own temporary folder is made (default: the system's temporary folder)."""


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``: OpenAI's fields, and decode options as extra
    fields (``steps``, ``guidance``, ``seed``, ``size``, ``seconds``, ``frames``) applied to
    every generated modality, validated by `DecodeOptions`."""

    model_config = ConfigDict(extra="forbid")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    modalities: list[str] | None = None
    """Output modalities, as OpenAI's field: ``["text", "image"]``; each but text is generated."""
    stream: bool = False
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)
    steps: int | None = None
    guidance: float | None = None
    size: str | None = Field(default=None, pattern=r"^[1-9][0-9]*x[1-9][0-9]*$")
    """``WIDTHxHEIGHT`` of generated pictures and frames, as OpenAI's image API writes it."""
    seconds: float | None = None
    frames: int | None = None
    decode: dict[str, dict[str, Any]] | None = None
    """Per-modality decode options (``{"video": {"steps": 4}}``), over the fields above."""

    @classmethod
    def parse(cls, raw: Any, also_tolerated: Collection[str] = ()) -> ChatCompletionRequest:
        """Validate a JSON body; OpenAI fields that change nothing here (and ``also_tolerated``)
        are dropped first."""
        if isinstance(raw, dict):
            ignored = OPENAI_FIELDS_TOLERATED | set(also_tolerated)
            raw = {k: v for k, v in raw.items() if k not in ignored}
        return validate_model(cls, raw, "request")

    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def decode_options(self, modalities: list[str]) -> dict[str, DecodeOptions]:
        """The decode options of each of ``modalities``: the shared fields, then ``decode``'s."""
        shared: dict[str, Any] = {"steps": self.steps, "guidance": self.guidance, "seed": self.seed}
        shared.update(seconds=self.seconds, num_frames=self.frames)
        if self.size:
            width, height = (int(v) for v in self.size.split("x"))
            shared.update(width=width, height=height)
        shared = {k: v for k, v in shared.items() if v is not None}
        options = {}
        for name in modalities:
            values = {**shared, **(self.decode or {}).get(name, {})}
            options[name] = validate_model(DecodeOptions, values, f"request.decode.{name}")
        return options
