"""Licences as data: every component's record (commercial yes / restricted / no and its source),
the ``licence_policy: commercial`` refusal naming each component and its replacement, restricted
components listed in one line, and where licences are shown (``model.licences()``, ``nextgpt
plugins``, the saved folder)."""

from __future__ import annotations

import json
import types

import nextgpt
import pytest
from nextgpt.config import LLMConfig
from nextgpt.errors import ConfigError, LicencePolicyError, RestrictedLicenceWarning
from nextgpt.interfaces import EncoderBackend
from nextgpt.licence_policy import check_licence_policy, llm_licence, planned_licences
from nextgpt.licences import (
    APACHE_2,
    IMAGEBIND,
    LLAMA_1,
    QWEN_2_5,
    RANDOM_WEIGHTS,
    STABILITY_COMMUNITY,
    Licence,
)
from nextgpt.plugins import load_plugins
from nextgpt.presets import preset_config


def commercial_encoder_plugin() -> object:
    """An in-process plugin registering the ImageBind vision encoder under another name with an
    Apache-2.0 record: a commercial-use image encoder for the policy to accept (test only)."""
    plugin = types.SimpleNamespace()

    @nextgpt.hookimpl
    def register_encoders(register):
        from nextgpt_image import build_imagebind_encoder

        register(EncoderBackend(name="open-vision", modality="image", licence=APACHE_2, build=build_imagebind_encoder))

    plugin.register_encoders = register_encoders
    return plugin


@pytest.fixture(scope="module")
def open_registry():
    return load_plugins(allow=["image", "audio", "open"], extra_plugins={"open": commercial_encoder_plugin()})


def config_for(registry, policy: str = "commercial", **modalities):
    config = preset_config("tiny", registry, list(modalities) or None)
    raw = {name: {**config.modalities[name], **settings} for name, settings in modalities.items()}
    return config.model_copy(update={"modalities": {**config.modalities, **raw}, "licence_policy": policy})


# ----- the record ----------------------------------------------------------------------------------


def test_licence_record_commercial_field_and_older_spellings() -> None:
    assert APACHE_2.commercial == "yes" and APACHE_2.commercial_use and APACHE_2.source
    assert STABILITY_COMMUNITY.commercial == "restricted" and "USD 1M" in STABILITY_COMMUNITY.note
    assert IMAGEBIND.commercial == "no" and not IMAGEBIND.commercial_use
    older = Licence(name="MIT", commercial_use=True, url="https://example.org/MIT")
    assert older.commercial == "yes" and older.source == older.url == "https://example.org/MIT"
    assert Licence(name="NC", commercial_use=False).commercial == "no"
    with pytest.raises(ValueError, match="needs its restriction in note"):
        Licence(name="X", commercial="restricted")
    with pytest.raises(ValueError):
        Licence(name="X", commercial="maybe")


def test_every_registered_backend_declares_commercial_and_source(registry) -> None:
    for table in (registry.encoders, registry.decoders):
        for (modality, name), backend in table.items():
            assert backend.licence.commercial in ("yes", "restricted", "no"), (modality, name)
            assert backend.licence.source, f"{modality}:{name} gives no source for its licence"


def test_llm_licence_declared_known_or_unknown() -> None:
    assert llm_licence(LLMConfig()) == RANDOM_WEIGHTS
    assert llm_licence(LLMConfig(source="Qwen/Qwen2.5-7B-Instruct")) == QWEN_2_5
    assert llm_licence(LLMConfig(source="/models/mine")).commercial == "no"
    declared = LLMConfig(source="/models/mine", licence={"name": "Apache-2.0", "commercial": "yes", "source": "card"})
    assert llm_licence(declared).commercial == "yes"


def test_the_released_preset_carries_llama_1(registry, monkeypatch, tmp_path) -> None:
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("NEXTGPT_VICUNA_7B_V0", str(tmp_path))
    config = preset_config("nextgpt-7b-v0", registry)
    components = planned_licences(config, registry)
    assert components[0].label == f"llm ({tmp_path})" and components[0].licence == LLAMA_1


# ----- the policy ----------------------------------------------------------------------------------


def test_commercial_policy_refuses_each_no_component_naming_its_replacement(open_registry) -> None:
    config = config_for(open_registry, image={}, audio={})
    with pytest.raises(LicencePolicyError) as caught:
        check_licence_policy(config, open_registry, where="preset tiny")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("preset tiny: licence_policy 'commercial' refuses 3 component(s)")
    assert "image encoder (imagebind): CC-BY-NC-4.0 permits no commercial use; " in message
    assert "replace with modalities.image.encoder.backend=open-vision" in message
    assert "audio encoder (imagebind)" in message and "replace with modalities.audio.encoder.backend=clap" in message
    assert "audio decoder (audioldm)" in message
    assert "modalities.audio.decoder.backend=stable-audio (restricted: commercial use only under USD 1M" in message
    # The same configuration without the policy passes, and an undeclared LLM is refused by it.
    assert check_licence_policy(config.model_copy(update={"licence_policy": "any"}), open_registry)
    unknown = config_for(open_registry, image={"encoder": {"backend": "open-vision", "source": "tiny"}})
    unknown = unknown.model_copy(update={"llm": unknown.llm.model_copy(update={"source": "/models/mine"})})
    with pytest.raises(
        LicencePolicyError, match=r"llm \(/models/mine\): unknown \(not declared: give it as llm.licence"
    ):
        check_licence_policy(unknown, open_registry)


def test_only_the_modalities_built_are_checked(open_registry) -> None:
    config = config_for(open_registry, image={"encoder": {"backend": "open-vision", "source": "tiny"}}, audio={})
    with pytest.raises(LicencePolicyError, match="audio encoder"):
        check_licence_policy(config, open_registry)
    components = check_licence_policy(config, open_registry, ["image"])  # audio left out: not built
    assert [c.label for c in components] == [
        "llm (tiny)",
        "image encoder (open-vision)",
        "image decoder (stable-diffusion)",
    ]


def test_policy_stops_a_model_before_it_loads_and_accepts_a_commercial_one(open_registry, tmp_path) -> None:
    from nextgpt.model import NextGPTModel

    with pytest.raises(LicencePolicyError, match="image encoder \\(imagebind\\)"):
        NextGPTModel.from_pretrained(
            "tiny", registry=open_registry, modalities=["image"], overrides=["licence_policy=commercial"]
        )
    overrides = ["licence_policy=commercial", "modalities.image.encoder.backend=open-vision"]
    model = NextGPTModel.from_pretrained("tiny", registry=open_registry, modalities=["image"], overrides=overrides)
    licences = model.licences()
    assert list(licences) == ["llm (tiny)", "image encoder (open-vision)", "image decoder (stable-diffusion)"]
    assert [licence.commercial for licence in licences.values()] == ["yes", "yes", "yes"]
    folder = model.save_pretrained(tmp_path / "m")
    saved = json.loads((folder / "config.json").read_text())
    assert saved["config"]["licence_policy"] == "commercial"
    assert saved["licences"]["image encoder (open-vision)"]["commercial"] == "yes"
    assert saved["licences"]["image encoder (open-vision)"]["source"] == APACHE_2.source


def test_restricted_components_are_listed_in_one_warning_line() -> None:
    plugin = types.SimpleNamespace()

    @nextgpt.hookimpl
    def register_encoders(register):
        from nextgpt_audio import build_imagebind_encoder

        register(EncoderBackend(name="open-audio", modality="audio", licence=APACHE_2, build=build_imagebind_encoder))

    plugin.register_encoders = register_encoders
    registry = load_plugins(allow=["audio", "open-audio"], extra_plugins={"open-audio": plugin})
    config = config_for(
        registry,
        audio={"encoder": {"backend": "open-audio", "source": "tiny"}, "decoder": {"backend": "stable-audio"}},
    )
    with pytest.warns(RestrictedLicenceWarning) as record:
        check_licence_policy(config, registry)
    assert [str(w.message) for w in record] == [
        "licence_policy 'commercial': restricted commercial use: audio decoder (stable-audio): "
        "Stability-AI-Community, commercial use only under USD 1M annual revenue"
    ]


def test_commercial_only_on_the_command_line(capsys) -> None:
    from nextgpt.cli import main

    code = main(["chat", "--commercial-only", "-p", "hi", "--quiet"])
    err = capsys.readouterr().err
    assert code != 0
    assert "licence_policy 'commercial' refuses" in err and "image encoder (imagebind)" in err


def test_commercial_only_on_fit_is_the_policy_setting() -> None:
    from nextgpt.cli.fit_cmd import lightning_arguments

    assert lightning_arguments(["--config", "x.yaml", "--commercial-only", "--set", "seed=1"]) == [
        "--config",
        "x.yaml",
        "--model.overrides+=licence_policy=commercial",
        "--model.overrides+=seed=1",
    ]


def test_a_bad_policy_value_is_a_config_error(registry) -> None:
    from nextgpt.model import NextGPTModel

    with pytest.raises(ConfigError, match="licence_policy"):
        NextGPTModel.from_pretrained("tiny", registry=registry, overrides=["licence_policy=comercial"])


# ----- nextgpt plugins -----------------------------------------------------------------------------


def test_plugins_command_shows_commercial_and_source(registry) -> None:
    from nextgpt.cli.plugins_cmd import describe, format_table

    data = describe(registry)
    backends = {(b["modality"], b["name"]): b for p in data["plugins"] for b in p["backends"]}
    stable_audio = backends[("audio", "stable-audio")]
    assert stable_audio["commercial"] == "restricted" and stable_audio["licence_source"] == STABILITY_COMMUNITY.source
    assert backends[("video", "zeroscope")]["commercial"] == "no"
    table = format_table(data)
    row = next(line for line in table.splitlines() if line.startswith("decoder audio:stable-audio"))
    assert "restricted" in row and "USD 1M" in row and STABILITY_COMMUNITY.source in row


def test_plugins_command_summarises_a_models_licences(capsys, monkeypatch) -> None:
    from nextgpt.cli import main

    monkeypatch.setenv("NEXTGPT_PLUGINS", "image,video")
    assert main(["plugins", "--model", "tiny", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["model"]
    assert summary["name"] == "tiny" and summary["licence_policy"] == "any"
    by_component = {c["component"]: c for c in summary["components"]}
    assert by_component["llm (tiny)"]["commercial"] == "yes"
    assert by_component["video decoder (zeroscope)"]["licence"] == "CC-BY-NC-4.0"
    policy = summary["commercial_policy"]
    assert policy["passes"] is False and policy["restricted"] == []
    zeroscope = next(line for line in policy["refused"] if line.startswith("video decoder (zeroscope)"))
    assert zeroscope.endswith("replace with modalities.video.decoder.backend=cogvideox or wan")
    assert main(["plugins", "--model", "tiny"]) == 0
    table = capsys.readouterr().out
    assert "model tiny: licence_policy commercial refuses 3 component(s):" in table
