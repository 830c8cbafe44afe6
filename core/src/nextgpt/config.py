"""Pydantic configuration models shared by core and the plugins.

Every model forbids unknown fields, so a typo is an error that names the field, not a silent
default. `validate_model` turns pydantic's errors into a `ConfigError` listing, for each problem,
the dotted field, the value given and the reason.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nextgpt.errors import ConfigError
from nextgpt.licences import Licence

M = TypeVar("M", bound=BaseModel)

DtypeName = Literal["float32", "float16", "bfloat16"]
"""The floating-point types a config may name (`nextgpt.dtypes` maps them to torch's)."""


class StrictModel(BaseModel):
    """Base of every config model: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def validate_model(model: type[M], raw: Any, where: str = "") -> M:
    """Validate ``raw`` with ``model``; raise `ConfigError` naming field, value and reason."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


def format_validation_error(exc: ValidationError, where: str = "") -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(part) for part in (where, *err["loc"]) if part != "")
        value = err.get("input")
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        lines.append(f"{field or '<root>'}: {err['msg']} (got {shown})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


class DecodeOptions(StrictModel):
    """Per-call generation settings for a decoder. ``None`` means the decoder's default."""

    steps: int | None = Field(default=None, gt=0)
    guidance: float | None = Field(default=None, ge=0)
    height: int | None = Field(default=None, gt=0)
    width: int | None = Field(default=None, gt=0)
    num_frames: int | None = Field(default=None, gt=0)
    seconds: float | None = Field(default=None, gt=0)
    seed: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    """Backend-specific settings, e.g. ``eta`` or ``guidance_rescale`` (keyword arguments of a
    diffusers pipeline's call) or ``grid_size`` (the 3D example's meshes). Each decoder says
    which it takes; a name it does not take is an error naming the decoder and the setting."""

    def merged_over(self, defaults: DecodeOptions) -> DecodeOptions:
        """These options, with unset fields (and ``extra`` names) taken from ``defaults``."""
        values = defaults.model_dump()
        values.update({k: v for k, v in self.model_dump().items() if v is not None and k != "extra"})
        values["extra"] = {**defaults.extra, **self.extra}
        return DecodeOptions(**values)

    @classmethod
    def from_flat(cls, values: dict[str, Any], where: str = "decode options") -> DecodeOptions:
        """``{"steps": 20, "eta": 0.0}``: the named fields set, every other name into ``extra``
        (as the command lines' ``--decode-option NAME=VALUE`` gives them)."""
        fields = {k: v for k, v in values.items() if k in cls.model_fields and k != "extra"}
        extra = {k: v for k, v in values.items() if k not in fields}
        return validate_model(cls, {**fields, "extra": extra}, where)


class EncoderSettings(StrictModel):
    """Which encoder backend a modality uses and where its weights come from."""

    backend: str
    source: str = "tiny"
    """``"tiny"`` (random tiny weights), a local path, or a hub id / URL."""
    options: dict[str, Any] = Field(default_factory=dict)


class DecoderSettings(StrictModel):
    """Which decoder backend a modality uses and where its pipeline comes from."""

    backend: str
    source: str = "tiny"
    options: dict[str, Any] = Field(default_factory=dict)


class InputProjectorConfig(StrictModel):
    """``linear`` gives one LLM token per input (as released); ``mlp`` gives ``num_tokens``."""

    kind: Literal["linear", "mlp"] = "linear"
    num_tokens: int = Field(default=1, gt=0)
    hidden_dim: int | None = Field(default=None, gt=0)


class OutputProjectorConfig(StrictModel):
    """The GILL-style query transformer of NExT-GPT, or a plain linear map."""

    kind: Literal["query_transformer", "linear"] = "query_transformer"
    d_model: int = Field(default=512, gt=0)
    num_heads: int = Field(default=4, gt=0)
    num_encoder_layers: int = Field(default=4, ge=0)
    num_decoder_layers: int = Field(default=4, ge=1)
    dim_feedforward: int = Field(default=2048, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    add_token_embeddings: bool = True
    """Add the signal tokens' input embeddings to their hidden states (as released)."""


class ModalityConfig(StrictModel):
    """A modality's settings. Each plugin subclasses it to set its own defaults."""

    encoder: EncoderSettings
    decoder: DecoderSettings | None = None
    """``None`` makes the modality input-only."""
    input_projector: InputProjectorConfig = Field(default_factory=InputProjectorConfig)
    output_projector: OutputProjectorConfig = Field(default_factory=OutputProjectorConfig)
    signal_tokens: int | None = Field(default=None, gt=0)
    """Override the plugin's default number of signal tokens."""
    decode: DecodeOptions = Field(default_factory=DecodeOptions)
    """Default decoding settings; each call can override them."""
    loss_weight: float = Field(default=1.0, ge=0)
    """Weight of this modality's alignment loss in training."""


class LoraSettings(StrictModel):
    """LoRA adapters on the LLM, through peft."""

    r: int = Field(default=32, gt=0)
    alpha: int = Field(default=32, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class QuantizationSettings(StrictModel):
    """The LLM's frozen weights in 8 or 4 bits, through transformers' ``BitsAndBytesConfig``
    (bitsandbytes, CUDA GPUs only). LoRA trains on top of them, as QLoRA does; the embeddings,
    the lm_head, the encoders, projectors and decoders keep their own dtypes."""

    bits: Literal[4, 8]
    quant_type: Literal["nf4", "fp4"] = "nf4"
    """4-bit only: NormalFloat4 (QLoRA's choice) or plain FP4."""
    double_quant: bool = True
    """4-bit only: quantise the quantisation constants too (about 0.4 bit a weight saved)."""
    compute_dtype: DtypeName = "bfloat16"
    """4-bit only: the dtype matrix products run in."""


class LLMConfig(StrictModel):
    """The language model and how its vocabulary is extended."""

    source: str = "tiny"
    """``"tiny"``, a local folder or a hub id of a Hugging Face causal LM with its tokenizer."""
    template: str = "auto"
    """``auto``: the tokenizer's own chat template (its roles, end-of-turn tokens and BOS), or
    ``vicuna_v0`` for an LLM whose tokenizer has none; or a named template (``vicuna_v0``,
    ``vicuna_v0_legacy``, ``vicuna_v1``)."""
    system_prompt: str | None = None
    """A system prompt before every conversation (None: the template's own, if any)."""
    lora: LoraSettings | None = None
    train_embeddings: Literal["new_rows", "full"] = "new_rows"
    """``new_rows``: only the signal-token rows of the embedding and lm_head train, as their own
    small parameters (`nextgpt.llm.SignalRows`: no vocabulary-sized gradients or optimizer
    state); ``full``: the whole embedding and lm_head train, as the released checkpoint did."""
    dtype: DtypeName = "float32"
    media_wrap: tuple[str, str] | None = None
    """Tokens placed around every media embedding, whatever its modality (the released
    NExT-GPT used ``("<Img>", "</Img>")``); added to the vocabulary before the signal tokens."""
    bos_per_text_chunk: bool = False
    """Start every text chunk between media with BOS, as the released inference code did;
    by default only the sequence starts with BOS."""
    max_new_tokens: int = Field(default=128, gt=0)
    temperature: float = Field(default=0.0, ge=0)
    """0 means greedy decoding."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    quantization: QuantizationSettings | None = None
    """Load the LLM in 8 or 4 bits (`QuantizationSettings`); ``4`` or ``8`` alone means
    ``{bits: 4}`` / ``{bits: 8}``, e.g. ``--set llm.quantization=4``. None: ``dtype``."""
    cache: Literal["dynamic", "static"] = "dynamic"
    """The KV cache `generate` decodes with (``transformers``' own): ``dynamic`` grows step by
    step; ``static`` is allocated once for the prompt and answer, which lets ``transformers``
    compile the decoding step on a GPU (much faster per token there; no gain on a CPU)."""
    licence: Licence | None = None
    """The LLM weights' licence (name, ``commercial``: yes / restricted / no, ``source``). None:
    looked up by ``source`` in `nextgpt.licences.KNOWN_LLMS` (``tiny`` is random weights); a
    model not found there has an unknown licence, which ``licence_policy: commercial`` refuses."""

    @field_validator("quantization", mode="before")
    @classmethod
    def _bits_alone(cls, value: Any) -> Any:
        return {"bits": value} if isinstance(value, int) and not isinstance(value, bool) else value


class NextGPTConfig(StrictModel):
    """The whole system: the LLM plus one entry per enabled modality.

    ``modalities`` maps a modality name to its raw settings; each is validated with the
    config model of the plugin that provides the modality (`ModalitySpec.config_model`).
    """

    llm: LLMConfig = Field(default_factory=LLMConfig)
    modalities: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seed: int = 13
    licence_policy: Literal["any", "commercial"] = "any"
    """``commercial``: refuse to build a model with a component whose licence forbids commercial
    use (``commercial: no``) or is unknown, naming each and what could replace it; components
    whose commercial use is ``restricted`` are listed, with their restriction, in one warning
    (`nextgpt.licence_policy`). ``any``: no check."""
