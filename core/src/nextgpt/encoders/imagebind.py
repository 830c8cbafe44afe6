"""ImageBind as a frozen, shared encoder backend: the trunk every modality that uses it shares.

NExT-GPT encodes images, sounds and videos with ImageBind-huge (1.2B parameters, frozen): one
L2-normalised 1024-d vector per input, clip embeddings averaged for timed media. This module

- imports ImageBind's model code from the ``imagebind-unofficial`` wheel without running the
  package ``__init__`` (which imports data helpers that need pytorchvideo, decord,
  ``torchaudio.load`` and pkg_resources);
- builds the model: ``"tiny"`` (random, seeded, for tests), ``"imagebind_huge"`` (Meta's weights,
  downloaded once into ``nextgpt_home()/checkpoints``), or a local ``.pth`` state dict;
- provides `ImageBindEncoder`, a light per-tower view onto one shared model, which takes the
  modality's preprocessing as a function;
- provides `clip_starts`, where ImageBind places the clips of a timed medium.

What differs per modality lives in the modality's plugin: which tower it reads and the
``preprocess`` function that turns one loaded item into that tower's input (ImageBind's
``data.py``, re-implemented on plain arrays so the plugins load media with their own readers).
Tower names ("vision", ...) are ImageBind's keys. Licence of ImageBind code and weights:
CC BY-NC 4.0 (non-commercial).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from nextgpt.errors import ConfigError, NextGPTError
from nextgpt.files import file_problem
from nextgpt.interfaces import Encoder, EncoderPlan
from nextgpt.licences import IMAGEBIND
from nextgpt.paths import nextgpt_home
from nextgpt.shared import SharedModels

HUGE_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
"""Where Meta publishes the ImageBind-huge weights."""

_INSTALL_HINT = 'install it with: pip install "nextgpt-core[imagebind]"'

_TINY: dict[str, Any] = dict(
    video_frames=2, kernel_size=(2, 14, 14), out_embed_dim=32,
    vision_embed_dim=32, vision_num_blocks=1, vision_num_heads=2,
    audio_embed_dim=32, audio_num_blocks=1, audio_num_heads=2,
    audio_kernel_size=16, audio_stride=10,
    text_embed_dim=32, text_num_blocks=1, text_num_heads=2,
    depth_embed_dim=32, depth_kernel_size=16, depth_num_blocks=1, depth_num_heads=2,
    thermal_embed_dim=32, thermal_kernel_size=16, thermal_num_blocks=1, thermal_num_heads=2,
    imu_embed_dim=32, imu_kernel_size=8, imu_num_blocks=1, imu_num_heads=2,
)  # fmt: skip
_HUGE: dict[str, Any] = dict(
    vision_embed_dim=1280, vision_num_blocks=32, vision_num_heads=16,
    text_embed_dim=1024, text_num_blocks=24, text_num_heads=16,
    out_embed_dim=1024, audio_drop_path=0.1, imu_drop_path=0.7,
)  # fmt: skip
ARCHITECTURES: dict[str, dict[str, Any]] = {"huge": _HUGE, "tiny": _TINY}
"""Constructor arguments of ``ImageBindModel`` per variant (huge as ``imagebind_huge()``)."""

_TINY_SEED = 0


class ImageBindNotInstalledError(NextGPTError, ImportError):
    """ImageBind's model code (``imagebind-unofficial``) or one of its dependencies is missing."""


class CheckpointNotFoundError(NextGPTError, FileNotFoundError):
    """A weights file is missing and could not be downloaded; the message says where to put it."""


# --------------------------------------------------------------------------------------------
# Importing ImageBind's model code


def imagebind_module(name: str = "models.imagebind_model") -> ModuleType:
    """Import ``imagebind.<name>`` without executing ``imagebind/__init__.py``.

    The package ``__init__`` imports ``imagebind.data`` (pytorchvideo, decord, pkg_resources,
    ``torchaudio.load``), which is broken or absent here. A bare package module with the right
    ``__path__`` is put in ``sys.modules`` first, so only the model code is imported.
    """
    full = f"imagebind.{name}"
    if full in sys.modules:
        return sys.modules[full]
    added = False
    if "imagebind" not in sys.modules:
        spec = importlib.util.find_spec("imagebind")  # a top-level spec executes nothing
        if spec is None or not spec.submodule_search_locations:
            raise ImageBindNotInstalledError(f"ImageBind's model code is not installed: {_INSTALL_HINT}")
        sys.modules["imagebind"] = importlib.util.module_from_spec(spec)  # bare, not executed
        added = True
    try:
        return importlib.import_module(full)
    except ImportError as exc:
        if added:
            sys.modules.pop("imagebind", None)
        raise ImageBindNotInstalledError(f"cannot import {full} ({exc}); {_INSTALL_HINT}") from exc


# --------------------------------------------------------------------------------------------
# Building and loading the model


def _check_variant(variant: str) -> dict[str, Any]:
    if variant not in ARCHITECTURES:
        raise ConfigError(f"unknown ImageBind variant {variant!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[variant]


def _resolve(source: str, variant: str | None) -> tuple[str, Path | None]:
    """The architecture variant and the checkpoint path (None for random tiny weights)."""
    if source == "tiny":
        if variant not in (None, "tiny"):
            raise ConfigError(f"ImageBind source 'tiny' is the tiny variant, not {variant!r}")
        return "tiny", None
    if source == "imagebind_huge":
        if variant not in (None, "huge"):
            raise ConfigError(f"ImageBind source 'imagebind_huge' is the huge variant, not {variant!r}")
        return "huge", nextgpt_home() / "checkpoints" / "imagebind_huge.pth"
    variant = variant or "huge"
    _check_variant(variant)
    return variant, Path(source).expanduser().resolve()


def imagebind_identity(source: str, variant: str | None = None) -> str:
    """A string naming the backbone and its weights, e.g. ``imagebind:tiny`` or
    ``imagebind:huge:/path/to/imagebind_huge.pth`` (feature caches are keyed by it)."""
    variant, path = _resolve(source, variant)
    return f"imagebind:{variant}" if path is None else f"imagebind:{variant}:{path}"


def _build_tiny() -> nn.Module:
    """The tiny random model, identical on every call; the global RNG is left untouched."""
    model_cls = imagebind_module().ImageBindModel
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_TINY_SEED)
        return model_cls(**ARCHITECTURES["tiny"])


def _download_huge(path: Path) -> None:
    """Fetch Meta's ImageBind-huge weights into ``path`` (torch.hub writes a temp file first)."""
    from nextgpt.hub import offline_mode

    if offline_mode():
        raise CheckpointNotFoundError(
            f"ImageBind-huge weights are not at {path}, and HF_HUB_OFFLINE is set, so they are not "
            f"downloaded from {HUGE_URL}. Download the file where you are online and copy it to {path}, "
            "or give its path as the encoder source."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(HUGE_URL, str(path), progress=True)
    except Exception as exc:
        raise CheckpointNotFoundError(
            f"ImageBind-huge weights are not at {path} and could not be downloaded from {HUGE_URL} "
            f"({type(exc).__name__}: {exc}). Download the file elsewhere and copy it to {path}, "
            "or give its path as the encoder source."
        ) from None


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """Load a state dict saved with ``torch.save``; memory-mapped when the file format allows."""
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # legacy format
    except Exception as exc:
        raise ConfigError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: expected an ImageBind state dict (name -> tensor), got {type(state).__name__}")
    return state


def _load_checkpoint(path: Path, variant: str) -> nn.Module:
    """Build ``variant`` and load ``path`` strictly into it.

    ImageBind's constructor calls ``.item()`` on tensors, so it cannot run on the meta device:
    the model is initialised on the CPU (under a forked RNG, leaving the global one untouched),
    then its tensors are replaced by the memory-mapped checkpoint tensors (``assign=True``), so
    the random ones are freed instead of being copied into.
    """
    state = _read_state_dict(path)
    arch = _check_variant(variant)
    # Cheap early check (building huge takes a while): the vision head is [out_dim, vision_dim].
    probe, shape = (
        "modality_heads.vision.2.weight",
        [arch["out_embed_dim"], arch["vision_embed_dim"]],
    )
    if probe not in state or list(state[probe].shape) != shape:
        found = list(state[probe].shape) if probe in state else "absent"
        raise ConfigError(
            f"{path}: not an ImageBind-{variant} state dict ({probe} is {found}, "
            f"ImageBind-{variant} has {shape}). "
            'Is the encoder option `variant` right ("huge" or "tiny")?'
        )
    model_cls = imagebind_module().ImageBindModel
    with torch.random.fork_rng(devices=[]):
        model = model_cls(**arch)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = [
            f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"
            for what, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", wrong),
            )
            if keys
        ]
        raise ConfigError(
            f"{path}: not an ImageBind-{variant} state dict: {'; '.join(parts)}. "
            'Is the encoder option `variant` right ("huge" or "tiny")?'
        )
    model.load_state_dict(state, strict=True, assign=True)
    return model


def plan_imagebind(source: str, variant: str | None = None, **_: Any) -> EncoderPlan:
    """The size of the ImageBind model ``source`` names, from its architecture alone: built with
    empty (meta) parameters, no checkpoint read or downloaded (`EncoderBackend.plan`). Every
    tower shares the one backbone, so each modality reports the same identity."""
    from accelerate import init_empty_weights

    variant, _path = _resolve(source, variant)
    with init_empty_weights():  # parameters on meta; its constructor's own tensors stay real
        model = imagebind_module().ImageBindModel(**_check_variant(variant))
    parameters = sum(p.numel() for p in model.parameters())
    return EncoderPlan(
        identity=imagebind_identity(source, variant),
        parameters=parameters,
        dim=int(_check_variant(variant)["out_embed_dim"]),
    )


def load_imagebind(source: str, variant: str | None = None) -> nn.Module:
    """Build a frozen ImageBind model in eval mode.

    Args:
        source: ``"tiny"`` (random tiny model, seeded: identical every time), ``"imagebind_huge"``
            (Meta's weights from ``nextgpt_home()/checkpoints/imagebind_huge.pth``, downloaded
            from `HUGE_URL` when absent), or the path of a local ``.pth`` state dict.
        variant: architecture of a local state dict, ``"huge"`` (default) or ``"tiny"``.

    Raises:
        ImageBindNotInstalledError: ``imagebind-unofficial`` or a dependency is missing.
        CheckpointNotFoundError: the weights file is missing (and, for huge, not downloadable).
        ConfigError: unknown variant, unreadable file, or a state dict of another architecture.
    """
    variant, path = _resolve(source, variant)
    if path is None:
        model = _build_tiny()
    else:
        if source == "imagebind_huge" and not path.is_file():
            _download_huge(path)
        problem = file_problem(path)
        if problem == "file not found":
            raise CheckpointNotFoundError(f"ImageBind checkpoint not found: {path} (encoder source {source!r})")
        if problem is not None:
            raise ConfigError(f"{path}: {problem} (ImageBind checkpoint, encoder source {source!r})")
        model = _load_checkpoint(path, variant)
    model.requires_grad_(False)
    return model.eval()


# --------------------------------------------------------------------------------------------
# The encoder


def _out_dim(model: nn.Module, tower: str) -> int:
    """Width of a tower's embedding: the output size of the last linear layer of its head."""
    linears = [m for m in model.modality_heads[tower].modules() if isinstance(m, nn.Linear)]
    return int(linears[-1].out_features)


def run_tower(model: nn.Module, tower: str, batch: torch.Tensor, logit_scale: bool = True) -> torch.Tensor:
    """Embed a batch with one ImageBind tower: ``[B, dim]``.

    With ``logit_scale`` this is ``model({tower: batch})[tower]``, ImageBind's own forward. Without,
    the same steps (clips folded into the batch, preprocessor, trunk, head, postprocessor, mean over
    clips) run with the postprocessor's ``LearnableLogitScaling`` left out, so every output is
    the mean of unit vectors (the audio tower would otherwise multiply by 20).
    """
    if logit_scale:
        return model({tower: batch})[tower]
    scaling = imagebind_module("models.helpers").LearnableLogitScaling
    clips = batch.ndim >= 5  # timed media's inputs are [B, clips, ...]
    if clips:
        b, s = batch.shape[:2]
        batch = batch.reshape(b * s, *batch.shape[2:])
    prepared = model.modality_preprocessors[tower](**{tower: batch})
    x = model.modality_trunks[tower](**prepared["trunk"])
    x = model.modality_heads[tower](x, **prepared["head"])
    post = model.modality_postprocessors[tower]
    for step in post if isinstance(post, nn.Sequential) else [post]:
        if not isinstance(step, scaling):
            x = step(x)
    if clips:
        x = x.reshape(b, s, -1).mean(dim=1)
    return x


class ImageBindEncoder(Encoder):
    """One ImageBind tower as an `Encoder`: ``forward(batch) -> [B, 1, dim]``.

    The backbone is shared: `from_shared` takes it from a `SharedModels` cache so image, audio
    and video use one instance. It is kept in a plain attribute (not a registered sub-module), so

    - ``parameters()`` and ``state_dict()`` of this encoder and of any parent module do not hold
      the 1.2B frozen weights (they are not saved with trained checkpoints, nor counted three
      times, nor touched by a parent's ``train()`` / ``requires_grad_()``);
    - ``.to()`` / ``.half()`` / ``.cuda()`` still move it: `_apply` is forwarded to the backbone,
      which moves it for every encoder sharing it (they share one device by construction).

    Args:
        model: a frozen ImageBind model (`load_imagebind`).
        tower: ImageBind's modality key, e.g. ``"vision"`` or ``"audio"``.
        preprocess: turns one loaded media item into the tower's input tensor.
        identity: names the backbone and its weights (`imagebind_identity`).
        logit_scale: keep ImageBind's postprocessor scaling (x20 for audio; upstream behaviour).
            ``False`` leaves it out, as the released NExT-GPT code does.
    """

    licence = IMAGEBIND

    def __init__(
        self,
        model: nn.Module,
        tower: str,
        preprocess: Callable[[Any], torch.Tensor],
        identity: str,
        logit_scale: bool = True,
    ) -> None:
        super().__init__()
        towers = list(model.modality_trunks.keys())
        if tower not in towers:
            raise ConfigError(f"ImageBind has no tower {tower!r}; its towers are {towers}")
        object.__setattr__(self, "_backbone", model)  # deliberately not a registered sub-module
        self.tower = tower
        self.logit_scale = logit_scale
        self._preprocess = preprocess
        self.dim = _out_dim(model, tower)
        scaling = imagebind_module("models.helpers").LearnableLogitScaling
        scaled = any(isinstance(m, scaling) for m in model.modality_postprocessors[tower].modules())
        # Features differ when the scaling is dropped, so caches must not mix them.
        self.identity = identity + (":unscaled" if scaled and not logit_scale else "")

    @classmethod
    def from_shared(
        cls,
        source: str,
        shared: SharedModels | None,
        tower: str,
        preprocess: Callable[[Any], torch.Tensor],
        variant: str | None = None,
        logit_scale: bool = True,
    ) -> ImageBindEncoder:
        """An encoder for ``tower`` on the ImageBind model that ``shared`` holds for ``source``.

        Args:
            source: as for `load_imagebind`.
            shared: the cache the model is taken from (built on first use, key
                ``("imagebind", source, variant)``); ``None`` builds a private one.
            tower: ImageBind's modality key.
            preprocess: turns one media item into the tower's input.
            variant: architecture of a local state dict (``"huge"`` / ``"tiny"``).
            logit_scale: see `ImageBindEncoder`.
        """
        variant, _ = _resolve(source, variant)
        shared = shared if shared is not None else SharedModels()
        model = shared.get(("imagebind", source, variant), lambda: load_imagebind(source, variant))
        return cls(model, tower, preprocess, imagebind_identity(source, variant), logit_scale=logit_scale)

    @property
    def backbone(self) -> nn.Module:
        """The shared ImageBind model."""
        return self._backbone

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> ImageBindEncoder:
        super()._apply(fn, recurse)
        self._backbone._apply(fn)
        return self

    def preprocess(self, media: Any) -> torch.Tensor:
        """One media item -> the tower's input for one item (stack items into a batch)."""
        return self._preprocess(media)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, ...]`` preprocessed inputs -> ``[B, 1, dim]`` embeddings (no gradients: frozen)."""
        reference = next(self._backbone.parameters())
        batch = batch.to(device=reference.device, dtype=reference.dtype if batch.is_floating_point() else None)
        with torch.no_grad():
            features = run_tower(self._backbone, self.tower, batch, self.logit_scale)
        return features.unsqueeze(1)

    def extra_repr(self) -> str:
        return f"tower={self.tower!r}, dim={self.dim}, identity={self.identity!r}"


# --------------------------------------------------------------------------------------------
# Timed media: where ImageBind's clips start (the plugins' preprocessing uses it)


def clip_starts(duration: float, clip_seconds: int, clips: int) -> list[Fraction]:
    """Start times of ImageBind's clips (pytorchvideo's ``ConstantClipsPerVideoSampler``).

    ``clips`` starts spread evenly over ``[0, duration - clip_seconds]``: ``i * max_start / clips``.
    A medium shorter than one clip gets every clip at 0 (padded later), as upstream.
    """
    max_start = Fraction(max(duration - clip_seconds, 0))
    step = max_start / clips
    return [step * i for i in range(clips)]
