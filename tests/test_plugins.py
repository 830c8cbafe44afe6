"""Plugin discovery, the allow-list, conflicts, broken plugins and `nextgpt plugins`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import nextgpt
import pytest
from nextgpt.config import ModalityConfig
from nextgpt.errors import ConfigError, PluginConflictError
from nextgpt.interfaces import DecoderBackend, ModalitySpec, SignalTokenSpec
from nextgpt.licences import APACHE_2
from nextgpt.plugins import load_plugins

BIN = Path(sys.executable).parent


def make_plugin(modality: str, prefix: str, count: int = 2, placeholder: str | None = None, decoder: str | None = None):
    """A throwaway in-process plugin registering one modality (and optionally a decoder)."""

    class Config(ModalityConfig):
        pass

    spec = ModalitySpec(
        name=modality,
        signal_tokens=SignalTokenSpec(
            modality=modality, prefix=prefix, count=count, placeholder=placeholder or f"<{modality}>"
        ),
        config_model=Config,
        extensions=(".xyz",),
        output_extension=".xyz",
        load=lambda path: path,
        save=lambda media, path: path,
    )
    plugin = types.SimpleNamespace()

    @nextgpt.hookimpl
    def register_modalities(register):
        register(spec)

    plugin.register_modalities = register_modalities
    if decoder:

        @nextgpt.hookimpl
        def register_decoders(register):
            register(DecoderBackend(name=decoder, modality="image", licence=APACHE_2, build=lambda source: None))

        plugin.register_decoders = register_decoders
    return plugin


def test_installed_plugins_are_discovered_through_entry_points():
    registry = load_plugins(allow=["image", "audio", "video"])
    assert {name: spec.signal_tokens.count for name, spec in registry.modalities.items()} == {
        "image": 4,
        "audio": 8,
        "video": 24,
    }
    assert registry.plugins["image"].distribution == "nextgpt-image"
    assert registry.plugins["video"].version == metadata.version("nextgpt-video")
    assert registry.modalities["image"].signal_tokens.tokens == ["[IMG0]", "[IMG1]", "[IMG2]", "[IMG3]"]
    assert ("audio", "imagebind") in registry.encoders
    assert registry.decoder_backend("video", "zeroscope").licence.commercial_use is False
    assert not registry.errors


def test_allow_list_variable(monkeypatch):
    monkeypatch.setenv("NEXTGPT_PLUGINS", "image")
    assert set(load_plugins().modalities) == {"image"}
    monkeypatch.setenv("NEXTGPT_PLUGINS", "nextgpt-audio, video")  # distribution names work too
    assert set(load_plugins().modalities) == {"audio", "video"}
    monkeypatch.setenv("NEXTGPT_PLUGINS", "")
    registry = load_plugins()
    assert registry.modalities == {} and registry.plugins == {}


def test_unknown_modality_error_names_it(registry):
    with pytest.raises(nextgpt.UnknownModalityError, match="'3d'.*installed: audio, image, video"):
        registry.modality("3d")
    expected = "decoder backend 'dalle'.*available: flux-schnell, pixart-sigma, stable-diffusion"
    with pytest.raises(nextgpt.UnknownModalityError, match=expected):
        registry.decoder_backend("image", "dalle")


def test_duplicate_modality_names_both_distributions():
    with pytest.raises(PluginConflictError) as info:
        load_plugins(allow=["image", "copycat"], extra_plugins={"copycat": make_plugin("image", "PIC")})
    message = str(info.value)
    assert "modality 'image'" in message and "nextgpt-image 0.1.0" in message and "'copycat'" in message


def test_duplicate_signal_token_conflicts():
    with pytest.raises(PluginConflictError, match=r"signal token '\[IMG0\]'.*nextgpt-image.*'thief'"):
        load_plugins(allow=["image", "thief"], extra_plugins={"thief": make_plugin("picture", "IMG")})


def test_duplicate_placeholder_conflicts():
    with pytest.raises(PluginConflictError, match="placeholder '<audio>'"):
        load_plugins(
            allow=["audio", "echo"], extra_plugins={"echo": make_plugin("sound", "SND", placeholder="<audio>")}
        )


def test_duplicate_backend_name_conflicts():
    plugin = make_plugin("thermal", "THM", decoder="stable-diffusion")
    with pytest.raises(PluginConflictError, match="decoder backend 'stable-diffusion' for modality 'image'"):
        load_plugins(allow=["image", "sd2"], extra_plugins={"sd2": plugin})


def test_second_decoder_backend_for_an_existing_modality():
    plugin = make_plugin("thermal", "THM", decoder="tiny-gan")
    registry = load_plugins(allow=["image", "gan"], extra_plugins={"gan": plugin})
    assert registry.decoder_backend("image", "tiny-gan").name == "tiny-gan"
    assert registry.decoder_backend("image", "stable-diffusion").name == "stable-diffusion"
    assert registry.plugins["gan"].decoders == ["image:tiny-gan"]


def test_duplicate_entry_point_name_is_detected(monkeypatch):
    real = nextgpt.plugins._entry_points()
    impostor = metadata.EntryPoint(name="image", value="nextgpt_audio", group="nextgpt")
    monkeypatch.setattr(nextgpt.plugins, "_entry_points", lambda: [*real, impostor])
    with pytest.raises(PluginConflictError, match="plugin name 'image'.*nextgpt-image"):
        load_plugins(allow=["image"])


def test_plugin_failing_on_import_is_reported_and_others_load(monkeypatch):
    real = nextgpt.plugins._entry_points()
    broken = metadata.EntryPoint(name="broken", value="nextgpt_no_such_module_here", group="nextgpt")
    monkeypatch.setattr(nextgpt.plugins, "_entry_points", lambda: [*real, broken])
    with pytest.warns(RuntimeWarning, match="plugin 'broken' failed to load: ModuleNotFoundError"):
        registry = load_plugins(allow=["image", "audio", "broken"])
    assert set(registry.modalities) == {"image", "audio"}
    assert [e.plugin for e in registry.errors] == ["broken"]


def test_plugin_failing_in_registration_is_reported_and_dropped():
    plugin = types.SimpleNamespace()
    half = make_plugin("half", "HALF")

    @nextgpt.hookimpl
    def register_modalities(register):
        half.register_modalities(register)  # registers modality "half", then fails
        raise RuntimeError("weights folder not configured")

    plugin.register_modalities = register_modalities
    with pytest.warns(RuntimeWarning, match="plugin 'flaky' failed to load: RuntimeError: weights folder"):
        registry = load_plugins(allow=["image", "flaky"], extra_plugins={"flaky": plugin})
    assert set(registry.modalities) == {"image"}  # "half" was dropped with its plugin
    assert "flaky" not in registry.plugins
    assert "weights folder not configured" in str(registry.errors[0])


def test_config_validation_errors_name_field_value_and_reason(registry):
    spec = registry.modality("image")
    with pytest.raises(ConfigError) as info:
        spec.validate_config({"decode": {"steps": -3}})
    assert "modalities.image.decode.steps" in str(info.value)
    assert "-3" in str(info.value) and "greater than 0" in str(info.value)
    with pytest.raises(ConfigError, match=r"modalities.image.decoder.sourse: Extra inputs are not permitted"):
        spec.validate_config({"decoder": {"backend": "stable-diffusion", "sourse": "x"}})
    with pytest.raises(ConfigError, match=r"input_projector.kind: Input should be 'linear' or 'mlp' \(got 'conv'\)"):
        spec.validate_config({"input_projector": {"kind": "conv"}})


def test_signal_token_spec_resolves_ids():
    from nextgpt.tiny.llm import tiny_llm_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_path())
    spec = SignalTokenSpec(modality="image", prefix="IMG", count=2, placeholder="<image>")
    with pytest.raises(ConfigError, match=r"'\[IMG0\]' of modality 'image' is not in the tokenizer"):
        spec.resolve_ids(tokenizer)
    tokenizer.add_tokens(spec.tokens, special_tokens=True)
    ids = spec.resolve_ids(tokenizer)
    assert ids == [len(tokenizer) - 2, len(tokenizer) - 1]
    assert tokenizer("a [IMG0][IMG1]", add_special_tokens=False).input_ids[-2:] == ids


def test_plugins_command_json_and_table():
    env = {**os.environ, "NEXTGPT_PLUGINS": "image,audio,video"}
    out = subprocess.run(
        [str(BIN / "nextgpt"), "plugins", "--json"], capture_output=True, text=True, env=env, check=True
    )
    data = json.loads(out.stdout)
    counts = {m["name"]: len(m["signal_tokens"]) for p in data["plugins"] for m in p["modalities"]}
    assert counts == {"image": 4, "audio": 8, "video": 24}
    dists = {p["distribution"] for p in data["plugins"]}
    assert dists == {"nextgpt-image", "nextgpt-audio", "nextgpt-video"}
    zeroscope = [b for p in data["plugins"] for b in p["backends"] if b["name"] == "zeroscope"][0]
    assert zeroscope["commercial_use"] is False
    table = subprocess.run(
        [str(BIN / "nextgpt"), "plugins"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "nextgpt-video" in table and "24 [VID0]..[VID23]" in table and "(non-commercial)" in table


TOY_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "nextgpt-toy-{tag}"
version = "0.0.1"
dependencies = []

[project.entry-points.nextgpt]
toy{tag} = "nextgpt_toy_{tag}"
"""

TOY_MODULE = """
import nextgpt
from nextgpt.config import EncoderSettings, ModalityConfig
from nextgpt.interfaces import ModalitySpec, SignalTokenSpec


class ToyConfig(ModalityConfig):
    encoder: EncoderSettings = EncoderSettings(backend="none")


@nextgpt.hookimpl
def register_modalities(register):
    register(ModalitySpec(
        name="toy{tag}",
        signal_tokens=SignalTokenSpec(modality="toy{tag}", prefix="TOY{tag}_", count=3, placeholder="<toy{tag}>"),
        config_model=ToyConfig, extensions=(".toy",), output_extension=".toy",
        load=lambda path: path.read_text(), save=lambda media, path: path,
    ))
"""


@pytest.mark.slow
def test_pip_installed_distribution_is_discovered(tmp_path):
    """A third-party distribution installed into the venv shows up with no change to core."""
    tag = str(os.getpid())
    root = tmp_path / "toy"
    (root / f"nextgpt_toy_{tag}").mkdir(parents=True)
    (root / "pyproject.toml").write_text(TOY_PYPROJECT.format(tag=tag))
    (root / f"nextgpt_toy_{tag}" / "__init__.py").write_text(TOY_MODULE.replace("{tag}", tag))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(root)], check=True)
    try:
        env = {**os.environ, "NEXTGPT_PLUGINS": f"toy{tag},image"}
        out = subprocess.run(
            [str(BIN / "nextgpt"), "plugins", "--json"], capture_output=True, text=True, env=env, check=True
        )
        data = json.loads(out.stdout)
        toy = [p for p in data["plugins"] if p["plugin"] == f"toy{tag}"][0]
        assert toy["distribution"] == f"nextgpt-toy-{tag}" and toy["version"] == "0.0.1"
        assert toy["modalities"][0]["signal_tokens"] == [f"[TOY{tag}_0]", f"[TOY{tag}_1]", f"[TOY{tag}_2]"]
    finally:
        subprocess.run([*pip, "uninstall", "-y", f"nextgpt-toy-{tag}"], check=True)


# -- plugin failures on the command line -------------------------------------------------------------


@pytest.fixture
def cli_plugins(monkeypatch, tmp_path):
    """Run `nextgpt.cli.main` with extra entry points: ``add(ep, ...)``; the registry is rebuilt."""
    from nextgpt.model import NextGPTModel
    from nextgpt.plugins import reset_default_registry

    real = nextgpt.plugins._entry_points()
    extra: list[metadata.EntryPoint] = []
    monkeypatch.setattr(nextgpt.plugins, "_entry_points", lambda: [*real, *extra])
    monkeypatch.setattr(NextGPTModel, "from_pretrained", _no_model)
    monkeypatch.chdir(tmp_path)
    reset_default_registry()
    yield extra.extend
    reset_default_registry()


def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded")


BROKEN = metadata.EntryPoint(name="depth", value="nextgpt_depth_not_importable", group="nextgpt")
BROKEN_REASON = "ModuleNotFoundError: No module named 'nextgpt_depth_not_importable'"


def test_a_plugin_that_fails_to_load_is_named_where_its_modality_is_asked_for(cli_plugins, monkeypatch, capsys):
    from nextgpt.cli import main

    cli_plugins([BROKEN])
    monkeypatch.setenv("NEXTGPT_PLUGINS", "image,depth")
    assert main(["chat", "-p", "hi", "--media", "depth", "scan.png"]) == 1
    assert capsys.readouterr().err == (
        "error: no installed plugin provides modality 'depth' (installed: image); "
        f"plugin 'depth' is installed but failed to load: {BROKEN_REASON}\n"
    )
    assert main(["chat", "-p", "hi", "--request", "depth"]) == 1
    assert capsys.readouterr().err == (
        "error: --request: this model cannot generate 'depth' (it can generate: image); "
        f"plugin 'depth' is installed but failed to load: {BROKEN_REASON}\n"
    )


def test_plugins_command_fails_when_a_plugin_failed(cli_plugins, monkeypatch, capsys):
    from nextgpt.cli import main

    cli_plugins([BROKEN])
    monkeypatch.setenv("NEXTGPT_PLUGINS", "image,depth")
    assert main(["plugins"]) == 1
    captured = capsys.readouterr()
    assert "nextgpt-image" in captured.out  # what loaded is still listed
    assert captured.err == f"error: plugin 'depth' failed to load: {BROKEN_REASON}\n"
    assert main(["plugins", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["errors"] == [f"plugin 'depth' failed to load: {BROKEN_REASON}"]


def test_a_conflict_is_one_line_with_the_way_out_and_an_allow_list_resolves_it(cli_plugins, monkeypatch, capsys):
    from nextgpt.cli import main

    copycat = types.ModuleType("nextgpt_copycat_for_tests")
    copycat.register_modalities = make_plugin("image", "PIC").register_modalities
    monkeypatch.setitem(sys.modules, copycat.__name__, copycat)
    cli_plugins([metadata.EntryPoint(name="copycat", value=copycat.__name__, group="nextgpt")])
    monkeypatch.delenv("NEXTGPT_PLUGINS", raising=False)

    assert main(["chat", "-p", "hi"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    found = re.fullmatch(
        r"error: modality 'image' is claimed by both nextgpt-image 0\.1\.0 and plugin 'copycat'; load only one of "
        r"them by listing the plugins to load in NEXTGPT_PLUGINS, e\.g\. NEXTGPT_PLUGINS=(\S+) \(all but copycat\)\n",
        err,
    )
    assert found, err
    allow = found.group(1)
    assert "nextgpt-image" in allow.split(",") and "copycat" not in allow

    assert main(["plugins"]) == 1  # the rest is listed, the conflict reported
    captured = capsys.readouterr()
    assert "nextgpt-image" in captured.out and "nextgpt-audio" in captured.out
    assert captured.err.startswith("error: modality 'image' is claimed by both nextgpt-image")
    assert main(["new-plugin", "thermal", "--out", "plugins"]) == 0  # commands without plugins run

    monkeypatch.setenv("NEXTGPT_PLUGINS", allow)  # the way out the message gave
    assert main(["plugins"]) == 0
    assert capsys.readouterr().err == ""


def test_unknown_allow_list_names_are_warned_with_did_you_mean(cli_plugins, monkeypatch, capsys):
    from nextgpt.cli import main
    from nextgpt.errors import PluginWarning

    monkeypatch.setenv("NEXTGPT_PLUGINS", "image,imgae,nextgpt_audio,nextgpt-vidoe")
    with pytest.warns(PluginWarning) as record:
        assert main(["plugins", "--json"]) == 0
    messages = sorted({str(w.message) for w in record if issubclass(w.category, PluginWarning)})
    assert len(messages) == 2
    assert messages[0].startswith("NEXTGPT_PLUGINS names 'imgae', which no installed plugin is; did you mean 'image'?")
    assert messages[1].startswith("NEXTGPT_PLUGINS names 'nextgpt-vidoe', which no installed plugin is; did you mean")
    assert "'nextgpt-video'" in messages[1]
    loaded = {p["plugin"] for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert loaded == {"image", "audio"}  # a distribution's name may be spelt with '_'
