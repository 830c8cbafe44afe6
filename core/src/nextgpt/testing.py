"""A conformance kit for modality plugins: subclass `ModalityPluginTests` in your test suite.

    from nextgpt.testing import ModalityPluginTests

    class TestMyModality(ModalityPluginTests):
        modality = "3d"

pytest then checks the plugin's spec and config model, its signal tokens against a real
tokenizer, a save/load round trip of its example media, clear errors on bad files, the
projector shapes, and a tiny generation through the whole system (tiny random LLM; the
plugin's ``tiny`` preset entry for its encoder and decoder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from nextgpt.config import DecodeOptions, ModalityConfig
from nextgpt.errors import ConfigError, MediaError
from nextgpt.interfaces import ModalitySpec
from nextgpt.plugins import PluginRegistry, load_plugins


class ModalityPluginTests:
    """Base class of a plugin's conformance tests. Set ``modality``; override the hooks below
    where your media need it."""

    modality: str = ""
    """The modality name the plugin registers."""
    plugins: tuple[str, ...] | None = None
    """Entry-point names to load (default: every installed plugin)."""

    # -- hooks ------------------------------------------------------------------------------------
    def make_example(self, spec: ModalitySpec) -> Any:
        """A media item to run through the system (default: the spec's own ``example``)."""
        assert spec.example is not None, f"modality {spec.name!r} registers no example() to test with"
        return spec.example()

    def assert_same_media(self, original: Any, reloaded: Any) -> None:
        """Compare an item with its saved-and-loaded copy (default: only that it loaded)."""
        assert reloaded is not None

    # -- fixtures ---------------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    def plugin_registry(self) -> PluginRegistry:
        return load_plugins(allow=self.plugins)

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
            assert tuple(condition.shape) == (2, *decoder.condition_shape)
            target = decoder.condition_from_text(["a caption", "another caption"])
            assert tuple(target.shape) == (2, *decoder.condition_shape)

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
