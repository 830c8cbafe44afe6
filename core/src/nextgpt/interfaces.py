"""The component interfaces a modality plugs into, and `ModalitySpec`, which binds them.

Data flow for one modality (see DESIGN.md)::

    file --ModalitySpec.load--> media --Encoder.preprocess/forward--> [B, n, d_enc]
         --InputProjector--> [B, k, d_llm] --(LLM)--> hidden states at the signal tokens
         --OutputProjector--> Condition --Decoder.generate--> media --ModalitySpec.save--> file

A `Condition` holds the tensors the decoder's pipeline is conditioned on (a sequence, its
attention mask, a pooled vector...), as the decoder declares them in its `ConditionSpec`.

Core only ever talks to a modality through these classes; anything that differs between
image, audio, video or a third-party modality lives in the plugin that implements them.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from nextgpt.conditions import Condition, ConditionSpec
from nextgpt.config import DecodeOptions, ModalityConfig
from nextgpt.errors import ConfigError
from nextgpt.licences import Licence

__all__ = [
    "BackendCard",
    "Decoder",
    "DecoderBackend",
    "Encoder",
    "EncoderBackend",
    "InputProjector",
    "Licence",
    "MetricBackend",
    "ModalitySpec",
    "OutputProjector",
    "SignalTokenSpec",
]


class SignalTokenSpec(BaseModel):
    """The signal tokens an LLM emits to ask for a modality, and the placeholder for its inputs.

    ``SignalTokenSpec(modality="image", prefix="IMG", count=4, placeholder="<image>")`` gives the
    tokens ``[IMG0]`` .. ``[IMG3]``.
    """

    model_config = ConfigDict(frozen=True)

    modality: str
    prefix: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    count: int = Field(gt=0)
    placeholder: str

    @property
    def tokens(self) -> list[str]:
        """The token strings, in order."""
        return [f"[{self.prefix}{i}]" for i in range(self.count)]

    def with_count(self, count: int) -> SignalTokenSpec:
        """The same spec with another number of tokens (a config may override the default)."""
        return self.model_copy(update={"count": count})

    def resolve_ids(self, tokenizer: Any) -> list[int]:
        """Ids of the tokens in ``tokenizer``; each must be a single, known token."""
        ids: list[int] = []
        unk = getattr(tokenizer, "unk_token_id", None)
        for token in self.tokens:
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or (unk is not None and token_id == unk):
                raise ConfigError(
                    f"signal token {token!r} of modality {self.modality!r} is not in the tokenizer; "
                    "add it with nextgpt.llm.add_signal_tokens"
                )
            ids.append(int(token_id))
        return ids

    def pattern(self) -> re.Pattern[str]:
        """A regex matching any of this modality's signal tokens."""
        return re.compile(r"\[" + re.escape(self.prefix) + r"(\d+)\]")


class Encoder(nn.Module, ABC):
    """A frozen media encoder for one modality.

    Heavy backbones (ImageBind is 1.2B parameters) are shared between the modalities that use
    them: an encoder is a light view onto a backbone taken from `nextgpt.shared.SharedModels`.
    """

    dim: int
    """Width of the features ``forward`` returns."""
    licence: Licence
    identity: str
    """A string naming the backbone and its weights; caches of features are keyed by it."""

    @abstractmethod
    def preprocess(self, media: Any) -> torch.Tensor:
        """Turn one loaded media item into a tensor; items are stacked into a batch."""

    @abstractmethod
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Encode a preprocessed batch to features of shape ``[B, n, dim]``."""


class InputProjector(nn.Module, ABC):
    """Trainable map from encoder features ``[B, n, d_enc]`` to LLM embeddings ``[B, k, d_llm]``."""

    num_tokens: int
    """``k``: how many LLM positions one media input occupies."""

    @abstractmethod
    def forward(self, features: torch.Tensor) -> torch.Tensor: ...


class OutputProjector(nn.Module, ABC):
    """Trainable map from signal-token states ``[B, n_sig, d_llm]`` to a decoder `Condition`.

    Built from the decoder's `ConditionSpec`; every condition it returns is of that spec, with
    all-ones attention masks (the projected sequence fills every position)."""

    condition_spec: ConditionSpec
    """The spec of the conditions it produces (the decoder's)."""

    @abstractmethod
    def forward(self, hidden: torch.Tensor) -> Condition:
        """``[B, n_sig, d_llm] -> Condition`` of ``condition_spec`` with ``B`` rows."""


class Decoder(ABC):
    """A frozen generator (a diffusers pipeline) conditioned on embeddings, never on text.

    The contract a decoder backend implements:

    * ``condition_spec``: the parts its generator is conditioned on (`ConditionSpec`: names,
      shapes, attention masks); readable without loading weights. Output projectors are built
      from it.
    * ``condition_from_text(captions)``: the `Condition` its own text encoder makes of captions,
      exactly what it would feed its denoiser for them: the stage-2/3 alignment target.
    * ``negative_condition()``: the unconditional condition (one row) used for classifier-free
      guidance, computed once; None where the pipeline forms its unconditional input itself or
      uses no guidance (e.g. FLUX-schnell, Stable Audio's zeroed embeddings).
    * ``generate(condition, options)``: one media item per condition row.
    * optional: ``denoising_loss(condition, media, min_snr_gamma)``, the noise-prediction loss of
      its frozen denoiser for target media, differentiable in the condition. A decoder that
      offers it sets ``supports_denoising_loss = True``; training checks that flag.

    Implementations load their weights lazily on first use and keep them.
    """

    licence: Licence
    identity: str
    """A string naming the pipeline and its weights; caches of caption embeddings are keyed by it."""
    supports_denoising_loss: ClassVar[bool] = False
    """Whether `denoising_loss` is implemented (set it with the method, never alone)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.supports_denoising_loss and cls.denoising_loss is Decoder.denoising_loss:
            raise TypeError(f"{cls.__name__} sets supports_denoising_loss but does not implement denoising_loss")

    @property
    @abstractmethod
    def condition_spec(self) -> ConditionSpec:
        """What ``generate`` is conditioned on, e.g. ``ConditionSpec.sequence(77, 768)`` for SD-1.5."""

    @abstractmethod
    def condition_from_text(self, captions: Sequence[str]) -> Condition:
        """Embed captions with the decoder's own text encoder: a `Condition` of ``B`` rows.

        This is what the pipeline would feed its denoiser for the caption, and the stage-2 target.
        """

    @abstractmethod
    def negative_condition(self) -> Condition | None:
        """The unconditional (empty prompt) condition, one row, computed once; None where the
        pipeline forms its unconditional input itself or has none."""

    @abstractmethod
    def generate(self, condition: Condition, options: DecodeOptions) -> list[Any]:
        """Generate one media item per row of ``condition``."""

    def denoising_loss(
        self, condition: Condition, media: Sequence[Any], min_snr_gamma: float | None = None
    ) -> torch.Tensor:
        """The frozen denoiser's noise-prediction loss for target ``media`` (one per condition
        row) conditioned on ``condition``, a scalar differentiable in the condition; ``min_snr_gamma``
        clips the per-sample min-SNR weight (None: plain mean). Optional: only decoders with
        ``supports_denoising_loss`` implement it (see `nextgpt.training.diffusion`)."""
        raise ConfigError(f"decoder {self.identity}: offers no denoising_loss (supports_denoising_loss is False)")

    def cut_long_captions_at_start(self) -> bool:
        """Have `condition_from_text` cut captions longer than the text encoder takes from the
        start (keeping their end), as the 2023 release did for Stable Diffusion's stage-2
        targets (``recipe: legacy``). Returns False where the decoder cannot (the default)."""
        return False

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Decoder:
        """Move the decoder (if loaded) and any later loads to ``device`` / ``dtype``."""
        return self

    def parameter_counts(self) -> dict[str, int] | None:
        """The parameters of each of its networks (e.g. ``{"unet": 859_520_964, ...}``), from
        its configuration alone (meta tensors: no weights read), for the memory plan
        (`nextgpt.memory`). None where the decoder cannot tell without loading."""
        return None


class EncoderPlan(BaseModel):
    """An encoder's size, known from its architecture without reading its weights."""

    model_config = ConfigDict(frozen=True)

    identity: str
    """Names the network and its weights: encoders with one identity share one instance, and
    the memory plan counts it once (ImageBind serves image, audio and video)."""
    parameters: int
    dim: int
    """The width of its features (the input projector's input)."""


class BackendCard(BaseModel):
    """What a backend runs with its default real weights, declared by the plugin so the README's
    backends table (``nextgpt plugins --backends-table``) and memory planning need no download.

    ``BackendCard(weights="black-forest-labs/FLUX.1-schnell", parameters=16.9,
    condition=ConditionSpec(...))``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: str
    """The default real weights: a hub id."""
    parameters: float = Field(gt=0)
    """Billions of parameters the backend loads with them (every frozen part: text encoders,
    VAE, vocoder...), from the model cards; approximate."""
    condition: ConditionSpec | None = None
    """A decoder's condition with these weights (what ``condition_spec`` reads from their configs)."""
    features: tuple[int, int] | None = None
    """An encoder's features per input, ``(n, d)`` (``forward`` gives ``[B, n, d]``)."""
    note: str | None = None
    """One line worth stating with the figures, e.g. that a backbone is shared by modalities."""

    def memory_gib(self, bytes_per_parameter: int = 2) -> float:
        """The weights' memory in GiB (default: 16-bit floats, as the large models are run)."""
        return self.parameters * 1e9 * bytes_per_parameter / 2**30


class EncoderBackend(BaseModel):
    """A way to build an `Encoder` for one modality, registered by a plugin."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    modality: str
    licence: Licence
    build: Callable[..., Encoder]
    """``build(source: str, shared: SharedModels, **options) -> Encoder``; ``source`` is
    ``"tiny"`` (random tiny weights, for tests), a local path, or a hub id / URL."""
    plan: Callable[..., EncoderPlan] | None = None
    """``plan(source: str, **options) -> EncoderPlan`` (the options ``build`` takes): the encoder's
    size from its architecture alone, for the memory plan (`nextgpt.memory`). None: the plan
    builds the encoder with empty (meta) parameters, which suits encoders built from a config."""
    card: BackendCard | None = None
    """The default real weights and their figures (for the backends table), if declared."""


class DecoderBackend(BaseModel):
    """A way to build a `Decoder` for one modality, registered by a plugin."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    modality: str
    licence: Licence
    build: Callable[..., Decoder]
    """``build(source: str, **options) -> Decoder``; ``source`` as for `EncoderBackend`."""
    card: BackendCard | None = None
    """The default real weights, their condition and figures (for the backends table), if declared."""


class MetricBackend(BaseModel):
    """A quality metric for generated media of one modality (e.g. FID for images), registered
    by a plugin. ``build(**options)`` returns an object with ``update(generated, references,
    captions)`` and ``compute() -> float``; options carry local weight paths where the metric
    needs a pretrained feature extractor."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    modality: str
    build: Callable[..., Any]
    higher_is_better: bool = True
    needs_references: bool = False
    """Whether the metric compares against reference media (FID) or only captions (CLIP score)."""


class MediaExtent(BaseModel):
    """How big one media item is, as far as limits care: what a server refuses beyond its
    ``max_pixels`` or ``max_seconds`` (`ModalitySpec.measure`). ``None``: not applicable."""

    model_config = ConfigDict(frozen=True)

    pixels: int | None = None
    """Pixels of one picture or frame (width x height)."""
    seconds: float | None = None
    """Duration, for sound and moving pictures."""


class ModalitySpec(BaseModel):
    """Everything core needs to know about a modality, registered by its plugin.

    ``config_model`` is the plugin's subclass of `nextgpt.config.ModalityConfig` (pydantic,
    ``extra="forbid"``) holding its defaults: which encoder and decoder backend, how many
    input tokens, the decoding defaults.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    signal_tokens: SignalTokenSpec
    config_model: type[ModalityConfig]
    extensions: tuple[str, ...]
    """File suffixes ``load`` accepts (lower case, with the dot)."""
    output_extension: str
    """Suffix of the files ``save`` writes."""
    load: Callable[[Path], Any]
    """Read a media file; raises `nextgpt.errors.MediaError` naming the file on bad input."""
    save: Callable[[Any, Path], Path]
    """Write one media item to a file and return its path."""
    description: str = ""
    example: Callable[[], Any] | None = None
    """Make a small synthetic media item (no file, no download): the demo and the plugin
    conformance tests feed it through the whole system."""
    measure: Callable[[Any], MediaExtent] | None = None
    """How big a loaded item is (pixels, seconds): servers refuse inputs beyond their limits with
    it. None: items of this modality are only limited by their file size."""
    openai_message_field: str | None = None
    """The field of an OpenAI chat message that also carries a generated item of this modality,
    as OpenAI's ``message.audio`` does for sound; None: the item comes only as a content part."""
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-preset overrides of ``config_model``'s defaults, e.g. ``{"tiny": {"decode": {...}}}``:
    what a preset such as ``tiny`` needs to know about this modality that core cannot."""

    @field_validator("signal_tokens")
    @classmethod
    def _tokens_match(cls, value: SignalTokenSpec, info: Any) -> SignalTokenSpec:
        name = info.data.get("name")
        if name is not None and value.modality != name:
            raise ValueError(f"signal_tokens.modality is {value.modality!r}, expected {name!r}")
        return value

    def validate_config(self, raw: dict[str, Any] | ModalityConfig | None) -> ModalityConfig:
        """Validate a raw config mapping with this modality's config model."""
        from nextgpt.config import validate_model

        if isinstance(raw, self.config_model):
            return raw
        if isinstance(raw, ModalityConfig):
            raw = raw.model_dump(exclude_unset=True)
        return validate_model(self.config_model, raw or {}, where=f"modalities.{self.name}")
