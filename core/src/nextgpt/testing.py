"""Conformance kits for plugins: subclass them in your test suite and pytest runs the checks.

`ModalityPluginTests` is for a plugin that adds a modality::

    from nextgpt.testing import ModalityPluginTests

    class TestMyModality(ModalityPluginTests):
        modality = "3d"

It checks the plugin's spec and config model, its signal tokens against a real tokenizer, a
save/load round trip of its example media (content compared), clear errors on bad files, the
projector shapes, and a tiny generation through the whole system (tiny random LLM; the plugin's
``tiny`` preset entry for its encoder and decoder).

`DecoderBackendTests` is for a decoder backend (a plugin that adds, say, another image decoder)::

    from nextgpt.testing import DecoderBackendTests

    class TestMyImageDecoder(DecoderBackendTests):
        modality = "image"
        backend = "my-decoder"

It checks the backend's condition spec, its text conditions, its negative condition, seeded
generation of media the modality saves and loads, refusals of wrong conditions and unknown
options, its optional denoising loss, output projectors built from its spec, and a tiny system
that uses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from pydantic import BaseModel

from nextgpt.conditions import Condition, ConditionPart, ConditionSpec
from nextgpt.config import DecodeOptions, ModalityConfig, OutputProjectorConfig
from nextgpt.errors import ConfigError, MediaError
from nextgpt.interfaces import Decoder, DecoderBackend, ModalitySpec
from nextgpt.plugins import PluginRegistry, load_plugins


def assert_media_equal(expected: Any, actual: Any, atol: float = 0.0, where: str = "media") -> None:
    """Assert two media items hold the same content, comparing what they are made of: arrays and
    tensors value by value (at most ``atol`` apart), PIL images by mode, size and pixels,
    dataclasses, pydantic models, mappings and sequences field by field, numbers and strings by
    value. Anything else is an error asking for a comparison of its own.

    Args:
        expected, actual: the two items.
        atol: the largest absolute difference allowed per value (0: identical).
        where: the name used in failure messages (nested fields append to it).
    """
    try:
        import PIL.Image
    except ImportError:  # pragma: no cover - Pillow comes with every in-repo plugin
        pil_type: type | None = None
    else:
        pil_type = PIL.Image.Image
    if pil_type is not None and isinstance(expected, pil_type):
        assert isinstance(actual, pil_type), f"{where}: expected a PIL image, got {type(actual).__name__}"
        assert (actual.mode, actual.size) == (expected.mode, expected.size), (
            f"{where}: {actual.mode} {actual.size} != {expected.mode} {expected.size}"
        )
        expected, actual = np.asarray(expected), np.asarray(actual)
    if isinstance(expected, torch.Tensor | np.ndarray):
        assert isinstance(actual, torch.Tensor | np.ndarray), f"{where}: expected an array, got {type(actual).__name__}"
        a = expected.detach().cpu().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
        b = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
        assert a.shape == b.shape, f"{where}: shape {b.shape} != {a.shape}"
        if a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            worst = float(np.nanmax(diff)) if diff.size else 0.0
            assert worst <= atol, f"{where}: values differ by up to {worst:g} (allowed {atol:g})"
        else:
            assert np.array_equal(a, b), f"{where}: contents differ"
        return
    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        assert type(actual) is type(expected), f"{where}: {type(actual).__name__} != {type(expected).__name__}"
        for item in dataclasses.fields(expected):
            assert_media_equal(getattr(expected, item.name), getattr(actual, item.name), atol, f"{where}.{item.name}")
        return
    if isinstance(expected, BaseModel):
        assert type(actual) is type(expected), f"{where}: {type(actual).__name__} != {type(expected).__name__}"
        for name in type(expected).model_fields:
            assert_media_equal(getattr(expected, name), getattr(actual, name), atol, f"{where}.{name}")
        return
    if isinstance(expected, Mapping):
        assert isinstance(actual, Mapping) and set(actual) == set(expected), f"{where}: keys differ"
        for key in expected:
            assert_media_equal(expected[key], actual[key], atol, f"{where}[{key!r}]")
        return
    if isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple) and len(actual) == len(expected), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(expected, actual, strict=True)):
            assert_media_equal(x, y, atol, f"{where}[{i}]")
        return
    if isinstance(expected, bool | str | bytes) or expected is None:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
        return
    if isinstance(expected, int | float):
        assert isinstance(actual, int | float) and abs(actual - expected) <= atol, f"{where}: {actual} != {expected}"
        return
    raise AssertionError(
        f"{where}: cannot compare a {type(expected).__name__}; override assert_same_media for your media type"
    )


def random_condition(spec: ConditionSpec, batch: int, seed: int = 0) -> Condition:
    """A `Condition` of ``spec`` with ``batch`` rows of standard normal values (all-ones masks),
    drawn from its own generator (the global RNG is untouched)."""
    generator = torch.Generator().manual_seed(seed)
    return Condition(spec, {p.name: torch.randn(batch, *p.shape, generator=generator) for p in spec.parts})


def _other_spec(spec: ConditionSpec) -> ConditionSpec:
    """A spec no decoder of ``spec`` takes: every part one wider."""
    parts = tuple(p.model_copy(update={"shape": (*p.shape[:-1], p.width + 1)}) for p in spec.parts)
    return ConditionSpec(parts=parts)


TINY_PROJECTOR = OutputProjectorConfig(
    d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32
)


class ModalityPluginTests:
    """Base class of a plugin's conformance tests. Set ``modality``; override the hooks below
    where your media need it."""

    modality: str = ""
    """The modality name the plugin registers."""
    plugins: tuple[str, ...] | None = None
    """Entry-point names to load (default: every installed plugin)."""
    extra_plugins: ClassVar[dict[str, object]] = {}
    """In-process plugins (name -> module with hookimpls) to load beside the installed ones."""
    round_trip_atol: float = 0.0
    """The largest difference per value a save/load round trip may introduce (0: lossless, as
    PNG; e.g. ``1 / 2**15`` for 16-bit PCM audio)."""

    # -- hooks ------------------------------------------------------------------------------------
    def make_example(self, spec: ModalitySpec) -> Any:
        """A media item to run through the system (default: the spec's own ``example``)."""
        assert spec.example is not None, f"modality {spec.name!r} registers no example() to test with"
        return spec.example()

    def assert_same_media(self, original: Any, reloaded: Any) -> None:
        """Compare an item with its saved-and-loaded copy: by default `assert_media_equal`, every
        field and value within ``round_trip_atol``. Override it for lossy formats (e.g. a mean
        error bound for H.264) or for media a file normalises on the way."""
        assert_media_equal(original, reloaded, self.round_trip_atol, f"{self.modality} round trip")

    # -- fixtures ---------------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    def plugin_registry(self) -> PluginRegistry:
        return load_plugins(allow=self.plugins, extra_plugins=self.extra_plugins)

    @pytest.fixture(scope="class")
    def spec(self, plugin_registry: PluginRegistry) -> ModalitySpec:
        assert self.modality, "set `modality = ...` on the test class"
        return plugin_registry.modality(self.modality)

    @pytest.fixture(scope="class")
    def tiny_system(self, plugin_registry: PluginRegistry):
        from nextgpt.model import NextGPTModel

        return NextGPTModel.from_pretrained("tiny", registry=plugin_registry, modalities=[self.modality])

    # -- checks -----------------------------------------------------------------------------------
    def test_spec(self, spec: ModalitySpec, plugin_registry: PluginRegistry) -> None:
        assert spec.name == self.modality == spec.signal_tokens.modality
        assert spec.extensions and all(e.startswith(".") and e == e.lower() for e in spec.extensions)
        assert spec.output_extension in spec.extensions, "files the plugin writes must be files it reads"
        assert issubclass(spec.config_model, ModalityConfig)
        config = spec.config_model()
        backend = plugin_registry.encoder_backend(spec.name, config.encoder.backend)
        assert backend.licence.name
        if config.decoder is not None:
            assert plugin_registry.decoder_backend(spec.name, config.decoder.backend).licence.name
        assert "tiny" in spec.presets, "add a `tiny` preset entry so tests and the demo run offline"

    def test_config_rejects_unknown_fields(self, spec: ModalitySpec) -> None:
        with pytest.raises(ConfigError, match=f"modalities.{spec.name}.no_such_field"):
            spec.validate_config({"no_such_field": 1})

    def test_signal_tokens(self, spec: ModalitySpec, tiny_system) -> None:
        tokens = spec.signal_tokens.tokens
        assert len(tokens) == len(set(tokens)) == spec.signal_tokens.count > 0
        ids = spec.signal_tokens.resolve_ids(tiny_system.tokenizer)
        assert ids == tiny_system.signal_ids[spec.name]
        encoded = tiny_system.tokenizer("".join(tokens), add_special_tokens=False).input_ids
        assert encoded == ids, "each signal token must be exactly one token"
        placeholder = tiny_system.tokenizer(spec.signal_tokens.placeholder, add_special_tokens=False).input_ids
        assert not set(placeholder) & set(ids)

    def test_media_round_trip(self, spec: ModalitySpec, tmp_path: Path) -> None:
        item = self.make_example(spec)
        path = spec.save(item, tmp_path / f"example{spec.output_extension}")
        assert Path(path).exists() and Path(path).stat().st_size > 0
        self.assert_same_media(item, spec.load(Path(path)))

    def test_bad_files_name_the_file(self, spec: ModalitySpec, tmp_path: Path) -> None:
        for suffix in spec.extensions:
            missing = tmp_path / f"missing{suffix}"
            empty = tmp_path / f"empty{suffix}"
            empty.write_bytes(b"")
            garbage = tmp_path / f"garbage{suffix}"
            garbage.write_bytes(bytes(range(256)) * 4)
            for bad in (missing, empty, garbage):
                with pytest.raises(MediaError, match=bad.name):
                    spec.load(bad)

    def test_projector_shapes(self, spec: ModalitySpec, tiny_system) -> None:
        embeds = tiny_system.encode_media(spec.name, [self.make_example(spec)])
        k = tiny_system.input_projectors[spec.name].num_tokens
        assert embeds.shape == (1, k, tiny_system.d_llm)
        if spec.name in tiny_system.decoders:
            decoder = tiny_system.decoders[spec.name]
            n = spec.signal_tokens.count
            with torch.no_grad():
                condition = tiny_system.project_signal(torch.zeros(2, n, tiny_system.d_llm), spec.name)
            assert condition.spec == decoder.condition_spec and condition.batch_size == 2
            target = decoder.condition_from_text(["a caption", "another caption"])
            assert target.spec == decoder.condition_spec and target.batch_size == 2

    def test_decoder_rejects_extra_options_it_does_not_take(self, spec: ModalitySpec, tiny_system) -> None:
        if spec.name not in tiny_system.decoders:
            pytest.skip(f"{spec.name} has no decoder")
        decoder = tiny_system.decoders[spec.name]
        condition = decoder.condition_from_text(["a caption"])
        with pytest.raises(ConfigError, match="no_such_setting"):
            decoder.generate(condition, DecodeOptions(steps=1, seed=0, extra={"no_such_setting": 1}))

    def test_tiny_generate(self, spec: ModalitySpec, tiny_system, tmp_path: Path) -> None:
        source = spec.save(self.make_example(spec), tmp_path / f"input{spec.output_extension}")
        messages = [
            {"role": "user", "content": [{"type": spec.name, "path": str(source)}, {"type": "text", "text": "again"}]}
        ]
        wanted = [spec.name] if spec.name in tiny_system.decoders else []
        out = tiny_system.generate(messages, output_dir=tmp_path / "out", request=wanted, max_new_tokens=4)
        assert [m.modality for m in out.media] == wanted
        for item in out.media:
            assert item.path is not None and item.path.suffix == spec.output_extension
            assert spec.load(item.path) is not None


class DecoderBackendTests:
    """Base class of a decoder backend's conformance tests. Set ``modality`` and ``backend``; the
    backend is built with ``build(source, **build_options)`` (``"tiny"`` by default)."""

    modality: str = ""
    """The modality the backend decodes to (registered by this or another plugin)."""
    backend: str = ""
    """The backend name, as registered (``modalities.<modality>.decoder.backend``)."""
    plugins: tuple[str, ...] | None = None
    """Entry-point names to load (default: every installed plugin)."""
    extra_plugins: ClassVar[dict[str, object]] = {}
    """In-process plugins (name -> module with hookimpls) to load beside the installed ones."""
    source: str = "tiny"
    build_options: ClassVar[dict[str, Any]] = {}
    decode_options: ClassVar[DecodeOptions] = DecodeOptions(steps=2, seed=0)
    """Options every ``generate`` of the kit uses, in the tiny system too (keep them small: the
    tiny pipeline's defaults, then the modality's, fill the rest)."""
    captions: ClassVar[tuple[str, str]] = ("a red circle on a white background", "a low beep")

    # -- hooks ------------------------------------------------------------------------------------
    def make_target(self, spec: ModalitySpec) -> Any:
        """A target media item for the denoising loss (default: the modality's ``example``)."""
        assert spec.example is not None, f"modality {spec.name!r} registers no example() to test with"
        return spec.example()

    def assert_same_media(self, expected: Any, actual: Any) -> None:
        """Compare two generations from the same seed (default: `assert_media_equal`, exact)."""
        assert_media_equal(expected, actual, 0.0, f"{self.backend} output")

    # -- fixtures ---------------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    def plugin_registry(self) -> PluginRegistry:
        return load_plugins(allow=self.plugins, extra_plugins=self.extra_plugins)

    @pytest.fixture(scope="class")
    def spec(self, plugin_registry: PluginRegistry) -> ModalitySpec:
        assert self.modality and self.backend, "set `modality = ...` and `backend = ...` on the test class"
        return plugin_registry.modality(self.modality)

    @pytest.fixture(scope="class")
    def entry(self, plugin_registry: PluginRegistry, spec: ModalitySpec) -> DecoderBackend:
        return plugin_registry.decoder_backend(self.modality, self.backend)

    @pytest.fixture(scope="class")
    def decoder(self, entry: DecoderBackend) -> Decoder:
        return entry.build(self.source, **self.build_options)

    # -- checks -----------------------------------------------------------------------------------
    def test_registered_with_a_licence(self, entry: DecoderBackend, decoder: Decoder) -> None:
        assert entry.name == self.backend and entry.modality == self.modality
        assert entry.licence.name and isinstance(decoder.licence.name, str) and decoder.licence.name
        assert decoder.licence == entry.licence, (
            f"the decoder's licence {decoder.licence} differs from the one registered, {entry.licence} "
            "(the licence policy and the backends table read the registered one)"
        )
        assert isinstance(decoder, Decoder) and decoder.identity

    def test_condition_spec(self, entry: DecoderBackend) -> None:
        fresh = entry.build(self.source, **self.build_options)
        spec = fresh.condition_spec
        assert isinstance(spec, ConditionSpec) and all(isinstance(p, ConditionPart) for p in spec.parts)
        if hasattr(fresh, "is_loaded"):
            assert not fresh.is_loaded, "condition_spec must be readable without loading the weights"

    def test_condition_from_text(self, decoder: Decoder) -> None:
        condition = decoder.condition_from_text(list(self.captions))
        assert isinstance(condition, Condition) and condition.spec == decoder.condition_spec
        assert condition.batch_size == 2
        assert not any(t.requires_grad for t in condition.tensors.values())
        again = decoder.condition_from_text(list(self.captions))
        for name in condition.spec.names:
            torch.testing.assert_close(again[name], condition[name], rtol=0, atol=0)
            if condition.mask(name) is not None:
                assert torch.equal(again.mask(name), condition.mask(name))
        alone = decoder.condition_from_text([self.captions[0]])
        for name in condition.spec.names:
            torch.testing.assert_close(alone[name][0], condition[name][0], rtol=1e-4, atol=1e-5)

    def test_negative_condition(self, decoder: Decoder) -> None:
        negative = decoder.negative_condition()
        assert negative is None or (negative.spec == decoder.condition_spec and negative.batch_size == 1)
        assert decoder.negative_condition() is negative, "the negative condition is computed once"

    def test_generate_is_seeded_media(self, decoder: Decoder, spec: ModalitySpec, tmp_path: Path) -> None:
        condition = decoder.condition_from_text(list(self.captions))
        first = decoder.generate(condition, self.decode_options)
        assert len(first) == 2
        self.assert_same_media(first, decoder.generate(condition, self.decode_options))
        for i, item in enumerate(first):
            path = spec.save(item, tmp_path / f"out{i}{spec.output_extension}")
            assert spec.load(Path(path)) is not None

    def test_generate_takes_projected_conditions(self, decoder: Decoder) -> None:
        out = decoder.generate(random_condition(decoder.condition_spec, 1, seed=1), self.decode_options)
        assert len(out) == 1

    def test_rejects_another_spec_and_unknown_options(self, decoder: Decoder) -> None:
        with pytest.raises((ValueError, ConfigError)):
            decoder.generate(random_condition(_other_spec(decoder.condition_spec), 1), self.decode_options)
        condition = decoder.condition_from_text(list(self.captions[:1]))
        options = self.decode_options.model_copy(update={"extra": {"no_such_setting": 1}})
        with pytest.raises(ConfigError, match="no_such_setting"):
            decoder.generate(condition, options)

    def test_denoising_loss_as_declared(self, decoder: Decoder, spec: ModalitySpec) -> None:
        target = self.make_target(spec)
        base = decoder.condition_from_text(list(self.captions))
        leaves = {name: base[name].clone().requires_grad_(True) for name in base.spec.names}
        condition = Condition(base.spec, leaves, base.masks)
        if not decoder.supports_denoising_loss:
            with pytest.raises(ConfigError, match="denoising_loss"):
                decoder.denoising_loss(condition, [target, target])
            return
        loss = decoder.denoising_loss(condition, [target, target], min_snr_gamma=5.0)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        total = sum(float(leaf.grad.abs().sum()) for leaf in leaves.values() if leaf.grad is not None)
        assert total > 0, "the denoising loss must reach the condition"

    def test_output_projectors_fit_the_spec(self, decoder: Decoder) -> None:
        from nextgpt.projectors import build_output_projector
        from nextgpt.training.losses import alignment_loss

        target = decoder.condition_from_text(list(self.captions))
        for kind in ("query_transformer", "linear"):
            config = TINY_PROJECTOR.model_copy(update={"kind": kind})
            projector = build_output_projector(config, 16, 4, decoder.condition_spec)
            projected = projector(torch.randn(2, 4, 16))
            assert projected.spec == decoder.condition_spec and projected.batch_size == 2
            loss = alignment_loss(projected, target)
            loss.backward()
            assert torch.isfinite(loss) and all(p.grad is not None for p in projector.parameters())

    def test_in_a_tiny_system(self, plugin_registry: PluginRegistry, spec: ModalitySpec, tmp_path: Path) -> None:
        from nextgpt.model import NextGPTModel

        settings = {"backend": self.backend, "source": self.source, "options": dict(self.build_options)}
        model = NextGPTModel.from_pretrained(
            "tiny", registry=plugin_registry, modalities=[self.modality], decoders={self.modality: settings}
        )
        assert model.output_projectors[self.modality].condition_spec == model.decoders[self.modality].condition_spec
        messages = [{"role": "user", "content": [{"type": "text", "text": "make one"}]}]
        out = model.generate(
            messages,
            output_dir=tmp_path,
            request=[self.modality],
            max_new_tokens=2,
            decode={self.modality: self.decode_options},
        )
        assert [m.modality for m in out.media] == [self.modality]
        path = out.media[0].path
        assert path is not None and path.suffix == spec.output_extension and spec.load(path) is not None
