"""`DiffusersDecoder`: what every diffusers-backed `Decoder` shares.

A backend (Stable Diffusion, AudioLDM, zeroscope, PixArt, Stable Audio...) subclasses it and
supplies only what differs: the pipeline class, how to build its tiny random pipeline, the
`ConditionSpec` its pipeline takes, how its text encoder turns captions into a `Condition`, and
how pipeline outputs become media. UNet and transformer pipelines are handled alike (the
denoiser is ``pipeline.unet`` or ``pipeline.transformer``). The base handles:

* sources: ``"tiny"`` (a random tiny pipeline built once, deterministically, saved into
  ``nextgpt_home()/tiny/<backend>-v<N>/`` and then loaded like any local folder), a local folder
  written by ``save_pretrained``, or a hub id; failures become `NextGPTError` naming the source;
* laziness: nothing is loaded until ``condition_from_text``, ``negative_condition`` or
  ``generate`` is first called, and the pipeline is then kept (the reference code reloaded it
  on every call); ``condition_spec`` reads only the text encoder's config;
* the negative (empty prompt) condition, computed once with the pipeline's own encoder (or
  None where the pipeline forms its unconditional input itself);
* ``generate``: each condition part goes in under its own keyword (``prompt_embeds``,
  ``prompt_attention_mask``...), the cached negative under ``negative_<keyword>``; conditions
  are never decoded back to text;
* the noise-prediction loss of UNet and transformer denoisers (`_noise_prediction_loss`), on
  which a backend builds its optional ``denoising_loss``;
* placement: ``to`` moves the pipeline (or sets where it loads); ``offload`` keeps it on the CPU
  between uses through diffusers' own hooks (``enable_model_cpu_offload`` /
  ``enable_sequential_cpu_offload``); `parameter_counts` sizes each network from its config.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from nextgpt.conditions import Condition, ConditionSpec
from nextgpt.config import DecodeOptions
from nextgpt.dtypes import parse_dtype
from nextgpt.errors import ConfigError, NextGPTError
from nextgpt.hub import looks_like_path
from nextgpt.interfaces import Decoder
from nextgpt.paths import nextgpt_home
from nextgpt.progress import progress_enabled

TINY = "tiny"
"""The source name that selects a random tiny pipeline (tests, demos)."""

LOAD_OPTIONS = frozenset({"revision", "variant", "cache_dir", "local_files_only", "use_safetensors"})
"""Constructor options passed through to the pipeline's ``from_pretrained``."""

OFFLOAD_MODES = ("model", "sequential")
"""``offload`` values: diffusers' ``enable_model_cpu_offload`` (one whole network at a time on
the device: little slower) or ``enable_sequential_cpu_offload`` (layer by layer: least memory,
much slower)."""


@contextlib.contextmanager
def quiet_diffusers(progress_bars: bool = False) -> Iterator[None]:
    """Silence diffusers' deprecation notices (and, unless asked for, loading progress bars).

    AudioLDM and TextToVideoSD live under ``diffusers.pipelines.deprecated`` in diffusers 0.42
    and log a warning each time one is built; that says nothing to a nextgpt user.

    Args:
        progress_bars: keep the "Loading pipeline components" / "Loading weights" bars.
    """
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    pipeline_logger = logging.getLogger("diffusers.pipelines.pipeline_utils")
    level = pipeline_logger.level
    bars = (dlogging.is_progress_bar_enabled(), tlogging.is_progress_bar_enabled())
    pipeline_logger.setLevel(logging.ERROR)
    if not progress_bars:
        dlogging.disable_progress_bar()
        tlogging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        pipeline_logger.setLevel(level)
        if not progress_bars:
            (dlogging.enable_progress_bar if bars[0] else dlogging.disable_progress_bar)()
            (tlogging.enable_progress_bar if bars[1] else tlogging.disable_progress_bar)()


def materialise_tiny(name: str, build: Any, seed: int = 0) -> Path:
    """The folder ``nextgpt_home()/tiny/<name>`` holding a tiny pipeline, built on first use.

    The pipeline is built with ``build()`` under ``torch.manual_seed(seed)`` inside
    ``torch.random.fork_rng`` (the caller's RNG state is untouched), saved into a temporary
    sibling folder and renamed into place, so concurrent processes never see half a folder;
    the loser of a race discards its copy.

    Args:
        name: folder name, versioned (e.g. ``stable-diffusion-v1``): change it when the
            tiny configuration changes.
        build: a function returning a `diffusers.DiffusionPipeline` with random weights.
        seed: the torch seed the weights are drawn with.
    """
    root = nextgpt_home() / "tiny"
    final = root / name
    if (final / "model_index.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.tmp-"))
    try:
        with torch.random.fork_rng(devices=[]), quiet_diffusers():
            torch.manual_seed(seed)
            pipeline = build()
            pipeline.save_pretrained(staging)
        try:
            os.rename(staging, final)
        except OSError:
            if not (final / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def ddim_scheduler() -> Any:
    """The DDIM scheduler of Stable Diffusion 1.x (scaled-linear betas 0.00085..0.012), used by
    the tiny pipelines of every latent-diffusion backend."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


class DiffusersDecoder(Decoder):
    """A `Decoder` around one diffusers pipeline, loaded lazily and kept.

    Subclasses set ``backend``, ``licence``, ``default_options`` (and ``tiny_options``) and
    implement the abstract hooks below.

    Args:
        source: ``"tiny"``, a local folder written by ``save_pretrained``, or a hub id.
        device: where the pipeline runs (default: CPU, or wherever ``to`` moves it).
        dtype: the pipeline's dtype (``torch.float16`` or ``"float16"``...; default float32).
        progress_bar: show the pipeline's denoising bar (True), never show it (False), or
            follow `nextgpt.progress.progress_enabled` at each call (None, the default: shown
            on a terminal unless turned off). Loading bars are shown only with True.
        defaults: decode settings used where a ``generate`` call leaves a field unset; they
            override the backend's ``default_options``.
        offload: keep the pipeline on the CPU between uses, moving it to ``device`` as it runs,
            with diffusers' own hooks: ``"model"`` (a whole network at a time) or
            ``"sequential"`` (layer by layer); None (default): the whole pipeline stays on ``device``.
        **options: passed to ``from_pretrained``: ``revision``, ``variant``, ``cache_dir``,
            ``local_files_only``, ``use_safetensors``. Anything else is a `ConfigError`.
    """

    backend: ClassVar[str]
    """Backend name as registered by the plugin, e.g. ``stable-diffusion``."""
    tiny_version: ClassVar[int] = 1
    """Bump when the tiny configuration changes, so stale tiny folders are not reused."""
    default_options: ClassVar[DecodeOptions] = DecodeOptions()
    """Used for fields a call leaves unset; ``None`` fields fall back to the pipeline's own."""
    tiny_options: ClassVar[DecodeOptions] = DecodeOptions()
    """Laid over ``default_options`` when ``source`` is ``"tiny"`` (small, fast outputs)."""

    def __init__(
        self,
        source: str,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        *,
        progress_bar: bool | None = None,
        defaults: DecodeOptions | dict[str, Any] | None = None,
        offload: str | None = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - LOAD_OPTIONS)
        if unknown:
            raise ConfigError(
                f"decoder {self.backend!r} (source {source!r}): unknown option(s) {unknown}; "
                f"known: {sorted(LOAD_OPTIONS | {'device', 'dtype', 'progress_bar', 'defaults', 'offload'})}"
            )
        if offload is not None and offload not in OFFLOAD_MODES:
            raise ConfigError(
                f"decoder {self.backend!r}: option offload={offload!r}; expected one of {', '.join(OFFLOAD_MODES)}"
            )
        self.offload = offload
        self.source = str(source)
        self._device = torch.device(device) if device is not None else None
        self._dtype = parse_dtype(dtype)
        self.progress_bar = progress_bar
        self._load_options = options
        base = self.default_options
        if self.source == TINY:
            base = self.tiny_options.merged_over(base)
        if isinstance(defaults, dict):
            defaults = DecodeOptions(**defaults)
        self.defaults = defaults.merged_over(base) if defaults is not None else base
        if self.source == TINY:
            self.identity = f"{self.backend}:tiny-v{self.tiny_version}"
        elif looks_like_path(self.source):
            folder = Path(self.source).expanduser().resolve()
            if not (folder / "model_index.json").is_file():
                what = "has no model_index.json" if folder.is_dir() else "does not exist"
                raise NextGPTError(
                    f"decoder {self.backend!r}: source folder {self.source!r} {what} "
                    "(expected a folder written by a diffusers pipeline's save_pretrained)"
                )
            self.identity = f"{self.backend}:{folder}"
        else:
            self.identity = f"{self.backend}:{self.source}"
        self._captions_cut_at_start = False
        self._pipeline: Any = None
        self._negative: Condition | None = None
        self._negative_computed = False
        self._condition_spec: ConditionSpec | None = None
        self._lock = threading.RLock()

    # ----- hooks a backend implements -------------------------------------------------------

    @classmethod
    @abstractmethod
    def pipeline_class(cls) -> type:
        """The diffusers pipeline class (imported here, so plugins import diffusers lazily)."""

    @classmethod
    @abstractmethod
    def build_tiny_pipeline(cls) -> Any:
        """A pipeline with tiny random weights; called once, under a fixed torch seed."""

    @abstractmethod
    def _read_condition_spec(self, location: str) -> ConditionSpec:
        """The `ConditionSpec` of the pipeline in ``location``, from its configs only (no weights)."""

    @abstractmethod
    def _encode_captions(self, pipeline: Any, captions: list[str]) -> Condition:
        """The pipeline's own text condition for ``captions``: what it feeds its denoiser."""

    @abstractmethod
    def _encode_negative(self, pipeline: Any) -> Condition | None:
        """The condition the pipeline uses when no negative prompt is given (one row), or None
        where the pipeline forms its unconditional input itself (or has none)."""

    @abstractmethod
    def _call_options(self, options: DecodeOptions) -> dict[str, Any]:
        """Pipeline keyword arguments for the size/length fields of ``options``."""

    @abstractmethod
    def _to_media(self, output: Any, options: DecodeOptions) -> list[Any]:
        """Turn the pipeline's output into one media item per condition row."""

    def _load_kwargs(self) -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments of this backend (e.g. ``safety_checker=None``)."""
        return {}

    def _pipeline_kwargs(self, condition: Condition, negative: Condition | None) -> dict[str, Any]:
        """The pipeline call's condition keywords: each part under its name and its mask under the
        mask's keyword; the negative's as ``negative_<name>`` and ``negative_<mask>`` (diffusers'
        convention). Override for a pipeline that names them otherwise."""
        kwargs: dict[str, Any] = {}
        for source, prefix in ((condition, ""), (negative, "negative_")):
            if source is None:
                continue
            for part in source.spec.parts:
                kwargs[prefix + part.name] = source[part.name]
                if part.mask is not None:
                    kwargs[prefix + part.mask] = source.mask(part.name)
        return kwargs

    @property
    def denoiser(self) -> torch.nn.Module:
        """The pipeline's denoising network: ``unet`` or ``transformer`` (override for another)."""
        components = self.pipeline.components
        for name in ("unet", "transformer"):
            if isinstance(components.get(name), torch.nn.Module):
                return components[name]
        raise NextGPTError(
            f"decoder {self.backend!r}: {type(self.pipeline).__name__} has neither a unet nor a transformer; "
            "override DiffusersDecoder.denoiser"
        )

    def _denoise(self, noisy: torch.Tensor, timesteps: torch.Tensor, condition: Condition) -> torch.Tensor:
        """The denoiser's prediction for ``noisy`` latents at ``timesteps`` under ``condition`` (cast
        to the denoiser's dtype), as the pipeline calls it. Default: a UNet conditioned through
        cross-attention on a one-part sequence spec (``encoder_hidden_states``; its mask, if any,
        as ``encoder_attention_mask``). Override for other denoisers or conditions."""
        spec = condition.spec
        if len(spec.parts) != 1 or spec.parts[0].pooled:
            raise NextGPTError(
                f"decoder {self.backend!r}: the default _denoise takes one sequence part, not {spec}; override it"
            )
        part = spec.parts[0]
        kwargs: dict[str, Any] = {"encoder_hidden_states": condition[part.name]}
        if part.mask is not None:
            kwargs["encoder_attention_mask"] = condition.mask(part.name)
        return self.denoiser(noisy, timesteps, **kwargs, return_dict=False)[0]

    def _training_scheduler(self) -> Any:
        """The noise schedule the denoising loss samples from (default: the pipeline's scheduler;
        a backend whose sampler cannot add noise at arbitrary timesteps returns a DDPM one)."""
        return self.pipeline.scheduler

    def _noise_prediction_loss(
        self, condition: Condition, latents: torch.Tensor, min_snr_gamma: float | None
    ) -> torch.Tensor:
        """One denoising step of the frozen denoiser on ``latents`` conditioned on ``condition``
        (gradients reach the condition), as `nextgpt.training.diffusion` defines the loss.
        Backends whose media map to latents build ``denoising_loss`` on this."""
        from nextgpt.training.diffusion import noise_prediction_loss

        weight = next(self.denoiser.parameters())
        condition = condition.to(device=weight.device, dtype=weight.dtype)

        def denoise(noisy: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            return self._denoise(noisy.to(weight.dtype), timesteps, condition)

        return noise_prediction_loss(denoise, self._training_scheduler(), latents.to(weight.device), min_snr_gamma)

    @torch.no_grad()
    def _vae_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` VAE inputs (pixels in [-1, 1]; AudioLDM: log-mel ``[N, 1, T, mels]``)
        -> scaled VAE latents ``[N, c, h, w]``."""
        vae = self.pipeline.vae
        weight = next(vae.parameters())
        latents = vae.encode(pixels.to(weight.device, weight.dtype)).latent_dist.mode()
        return latents * vae.config.scaling_factor

    # ----- loading --------------------------------------------------------------------------

    @classmethod
    def tiny_folder(cls) -> Path:
        """The folder of this backend's tiny pipeline, built and saved on first use."""
        return materialise_tiny(f"{cls.backend}-v{cls.tiny_version}", cls.build_tiny_pipeline)

    def location(self) -> str:
        """What ``from_pretrained`` is given: a local folder (tiny materialised) or a hub id."""
        if self.source == TINY:
            return str(self.tiny_folder())
        if looks_like_path(self.source):
            return str(Path(self.source).expanduser().resolve())
        if "local_files_only" not in self._load_options:
            from nextgpt.hub import prepare_hub_source

            what = f"decoder {self.backend!r} source"
            self._load_options["local_files_only"] = prepare_hub_source(self.source, "model_index.json", what)
        return self.source

    @property
    def is_loaded(self) -> bool:
        """Whether the pipeline has been loaded (it is, after the first encode or generate)."""
        return self._pipeline is not None

    @property
    def pipeline(self) -> Any:
        """The diffusers pipeline, loaded on first access and kept."""
        if self._pipeline is None:
            with self._lock:
                if self._pipeline is None:
                    self._pipeline = self._load()
        return self._pipeline

    def _load(self) -> Any:
        location = self.location()
        kwargs = {**self._load_options, **self._load_kwargs()}
        if self._dtype is not None:
            kwargs["torch_dtype"] = self._dtype
        try:
            with quiet_diffusers(bool(self.progress_bar)):
                pipeline = self.pipeline_class().from_pretrained(location, **kwargs)
        except Exception as exc:
            raise NextGPTError(
                f"decoder {self.backend!r}: could not load a {self.pipeline_class().__name__} "
                f"from source {self.source!r}: {type(exc).__name__}: {exc}"
            ) from exc
        for component in pipeline.components.values():
            if isinstance(component, torch.nn.Module):  # frozen: never trained, no gradients kept
                component.requires_grad_(False).eval()
        if self._captions_cut_at_start:
            _cut_at_start(pipeline)
        if self.offload is not None:
            self._enable_offload(pipeline)
        elif self._device is not None:
            pipeline.to(self._device)
        return pipeline

    def _enable_offload(self, pipeline: Any) -> None:
        """Install diffusers' offload hooks for ``self._device`` (the pipeline then sits on the
        CPU and each network moves to the device as it runs)."""
        enable = (
            pipeline.enable_model_cpu_offload if self.offload == "model" else pipeline.enable_sequential_cpu_offload
        )
        try:
            enable(device=self._device)
        except (RuntimeError, ValueError, ImportError) as exc:
            raise ConfigError(
                f"decoder {self.backend!r}: option offload={self.offload!r} could not be set up on "
                f"{self._device or 'the default device'}: {exc}"
            ) from exc

    def parameter_counts(self) -> dict[str, int] | None:
        """Parameters of each network of the pipeline (``unet``, ``vae``, ``text_encoder``...),
        built from the configs in its folder with empty (meta) weights: nothing is loaded. None
        when the folder is not local (a hub id not yet downloaded)."""
        from accelerate import init_empty_weights

        try:
            location = Path(self.location())
        except NextGPTError:  # a hub id, offline and not in the cache
            return None
        index = location / "model_index.json"
        if not index.is_file():
            return None
        counts: dict[str, int] = {}
        for name, entry in json.loads(index.read_text(encoding="utf-8")).items():
            if name.startswith("_") or not isinstance(entry, list) or len(entry) != 2 or None in entry:
                continue
            library, class_name = entry
            if library not in ("diffusers", "transformers") or not (location / name / "config.json").is_file():
                continue  # schedulers, tokenizers, feature extractors: no weights
            module_class = getattr(__import__(library), class_name)
            with init_empty_weights():
                if library == "diffusers":
                    network = module_class.from_config(module_class.load_config(location / name))
                else:
                    network = module_class(module_class.config_class.from_pretrained(location / name))
            counts[name] = sum(p.numel() for p in network.parameters())
        return counts

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None) -> DiffusersDecoder:
        """Move the pipeline (if loaded, else when it loads) to ``device`` and/or ``dtype``.

        Args:
            device: target device, e.g. ``"cuda"``; ``None`` keeps the current one.
            dtype: target dtype; a change drops the cached negative condition, which is then
                recomputed by the text encoder in the new dtype.
        """
        dtype = parse_dtype(dtype)
        if device is not None:
            self._device = torch.device(device)
        if dtype is not None and dtype != self._dtype:
            self._dtype = dtype
            self._negative, self._negative_computed = None, False
        if self._pipeline is not None and self.offload is not None:
            if dtype is not None:
                self._pipeline.to(dtype=self._dtype)
            if device is not None:
                self._enable_offload(self._pipeline)  # the hooks now move to the new device
        elif self._pipeline is not None:
            self._pipeline.to(device=self._device, dtype=self._dtype)
        if self._negative is not None and self._device is not None:
            self._negative = self._negative.to(self._device)
        return self

    # ----- conditions -----------------------------------------------------------------------

    @property
    def condition_spec(self) -> ConditionSpec:
        """What the pipeline is conditioned on, read from its configs; no weights are loaded."""
        if self._condition_spec is None:
            location = self.location()
            try:
                spec = self._read_condition_spec(location)
            except NextGPTError:
                raise
            except Exception as exc:
                raise NextGPTError(
                    f"decoder {self.backend!r}: could not read the text encoder config of source "
                    f"{self.source!r}: {type(exc).__name__}: {exc}"
                ) from exc
            self._condition_spec = spec
        return self._condition_spec

    def cut_long_captions_at_start(self) -> bool:
        """Every tokenizer of the pipeline truncates from the left from now on; the identity
        says so, so cached caption embeddings of the default truncation are not reused."""
        if not self._captions_cut_at_start:
            self._captions_cut_at_start = True
            self.identity = f"{self.identity}+captions-cut-at-start"
            if self._pipeline is not None:
                _cut_at_start(self._pipeline)
        return True

    def condition_from_text(self, captions: Sequence[str] | str) -> Condition:
        """Embed captions exactly as the pipeline would for its denoiser: a `Condition` of one row
        per caption. This is the stage-2 alignment target. Computed without gradients.

        Args:
            captions: one caption or a list of them.
        """
        batch = [captions] if isinstance(captions, str) else list(captions)
        if not batch:
            raise ValueError(f"decoder {self.identity}: condition_from_text got no captions")
        with torch.no_grad():
            return self._encode_captions(self.pipeline, batch)

    def negative_condition(self) -> Condition | None:
        """The unconditional (empty prompt) condition, one row, computed once; None where the
        pipeline forms its unconditional input itself."""
        if not self._negative_computed:
            with self._lock, torch.no_grad():
                if not self._negative_computed:
                    self._negative = self._encode_negative(self.pipeline)
                    self._negative_computed = True
        return self._negative

    def _check_condition(self, condition: Condition) -> None:
        if not isinstance(condition, Condition) or condition.spec != self.condition_spec:
            got = condition.spec if isinstance(condition, Condition) else type(condition).__name__
            raise ValueError(f"decoder {self.identity}: condition must be {self.condition_spec}, got {got}")

    # ----- generation -----------------------------------------------------------------------

    def generate(self, condition: Condition, options: DecodeOptions | None = None) -> list[Any]:
        """Generate one media item per row of ``condition``.

        Args:
            condition: decoder conditions of ``condition_spec``, e.g. from an `OutputProjector` or
                `condition_from_text`; any float dtype/device (cast to the pipeline's).
            options: steps, guidance, size/frames/seconds and seed; unset fields come from
                ``self.defaults`` and then from the pipeline's own defaults. The seed makes a
                CPU ``torch.Generator`` per call, so the same seed gives the same output on
                every call (and on every device, the starting noise being drawn on the CPU).
        """
        self._check_condition(condition)
        opts = (options or DecodeOptions()).merged_over(self.defaults)
        pipeline = self.pipeline
        # Read from one denoiser weight: pipeline.dtype/.device walk every module (about 1 ms a call).
        weight = next(self.denoiser.parameters())
        dtype, device = weight.dtype, weight.device
        condition = condition.detach().to(device=device, dtype=dtype)
        negative = self.negative_condition()
        if negative is not None:
            negative = negative.to(device=device, dtype=dtype).expand(condition.batch_size)
        kwargs: dict[str, Any] = {
            **self._pipeline_kwargs(condition, negative),
            "generator": None if opts.seed is None else torch.Generator().manual_seed(opts.seed),
        }
        if opts.steps is not None:
            kwargs["num_inference_steps"] = opts.steps
        if opts.guidance is not None:
            kwargs["guidance_scale"] = opts.guidance
        kwargs.update(self._call_options(opts))
        kwargs.update(self._extra_call_options(opts.extra, set(kwargs)))
        self._configure_progress_bar(pipeline)
        with torch.no_grad():
            output = pipeline(**kwargs)
        return self._to_media(output, opts)

    def _configure_progress_bar(self, pipeline: Any) -> None:
        """Show the denoising bar of the next pipeline call as ``progress_bar`` says (None:
        `nextgpt.progress.progress_enabled`, checked now); backends with their own denoising
        loop call this before ``pipeline.progress_bar(...)``."""
        show = progress_enabled() if self.progress_bar is None else self.progress_bar
        pipeline.set_progress_bar_config(disable=not show, desc=f"{self.backend} denoising", leave=False)

    def _extra_call_options(self, extra: dict[str, Any], taken: set[str]) -> dict[str, Any]:
        """``DecodeOptions.extra``, checked: each name must be an argument of the pipeline's call
        that the toolkit does not set itself from its own options or the condition."""
        if not extra:
            return {}
        accepted = inspect.signature(self.pipeline.__call__).parameters
        for name in extra:
            if name in taken:
                raise ConfigError(
                    f"decoder {self.identity}: decode option extra.{name} is set by the toolkit "
                    "(from the condition or from steps / guidance / size / seconds / seed)"
                )
            if name not in accepted:
                raise ConfigError(
                    f"decoder {self.identity}: decode option extra.{name}: {type(self.pipeline).__name__} "
                    f"takes no argument {name!r}"
                )
        return dict(extra)

    # ----- helpers for backends -------------------------------------------------------------

    def _hub_options(self) -> dict[str, Any]:
        """The constructor options that also apply to reading single config files."""
        return {k: v for k, v in self._load_options.items() if k in {"revision", "cache_dir", "local_files_only"}}

    def text_encoder_config(self, location: str) -> Any:
        """The ``text_encoder`` sub-config of a pipeline folder or hub id (no weights loaded)."""
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(location, subfolder="text_encoder", **self._hub_options())

    def tokenizer_max_length(self, location: str, fallback: int | None = None, subfolder: str = "tokenizer") -> int:
        """``model_max_length`` of the pipeline's tokenizer (its ``tokenizer_config.json``).

        Args:
            location: a pipeline folder or hub id.
            fallback: used if the file does not give a sensible value (e.g. the text encoder's
                ``max_position_embeddings``).
            subfolder: the tokenizer's folder (``tokenizer_2`` for a pipeline's second one).
        """
        folder = Path(location)
        if folder.is_dir():
            candidate = folder / subfolder / "tokenizer_config.json"
            path: str | None = str(candidate) if candidate.is_file() else None
        else:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(location, "tokenizer_config.json", subfolder=subfolder, **self._hub_options())
        value = None
        if path is not None:
            value = json.loads(Path(path).read_text(encoding="utf-8")).get("model_max_length")
        if isinstance(value, int) and 0 < value < 1_000_000:
            return value
        if fallback is None:
            raise NextGPTError(f"decoder {self.backend!r}: {location}/{subfolder} gives no model_max_length")
        return fallback

    def __repr__(self) -> str:
        state = "loaded" if self.is_loaded else "not loaded"
        return f"{type(self).__name__}({self.source!r}, {state})"


def _cut_at_start(pipeline: Any) -> None:
    """Set every tokenizer of ``pipeline`` (``tokenizer``, ``tokenizer_2``...) to drop the
    tokens of an over-long text from its start."""
    for component in pipeline.components.values():
        if hasattr(component, "truncation_side"):
            component.truncation_side = "left"
