"""The seams between the model's jobs: one encoding path with feature sources, portable model
folders, ``modalities=`` for folders, one path-or-hub-id rule and one dtype map."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from media_fixtures import write_test_image
from nextgpt.config import NextGPTConfig
from nextgpt.encoding import FeatureSource
from nextgpt.errors import ConfigError, NextGPTError
from nextgpt.model import NextGPTModel
from nextgpt.model_folder import FORMAT_VERSION, read_model_folder, write_pretrained
from PIL import Image


class RecordingSource(FeatureSource):
    """Holds features by the item's identity; records what the model asked and stored."""

    def __init__(self) -> None:
        self.held: dict[int, torch.Tensor] = {}
        self.asked: list[tuple[str, str | None]] = []
        self.stored: list[str] = []

    def get(self, modality, item, key):
        self.asked.append((modality, key))
        return self.held.get(id(item))

    def put(self, modality, item, key, features):
        self.stored.append(modality)
        self.held[id(item)] = features.detach().clone()
        return features


def test_encoding_goes_through_the_feature_source_in_encode_media_and_generate(tiny_model, tmp_path, monkeypatch):
    image = Image.open(write_test_image(tmp_path / "cat.png")).convert("RGB")
    direct = tiny_model.encode_media("image", [image])
    source = RecordingSource()
    monkeypatch.setattr(tiny_model, "feature_source", source)
    assert torch.equal(tiny_model.encode_media("image", [image], keys=["k1"]), direct)  # a miss: computed, stored
    assert source.asked == [("image", "k1")] and source.stored == ["image"]
    encoder = tiny_model.encoders["image"]
    monkeypatch.setattr(encoder, "forward", lambda *a, **k: pytest.fail("the encoder ran for a held item"))
    assert torch.equal(tiny_model.encode_media("image", [image]), direct)  # a hit: the encoder does not run
    source.held[id(image)] = torch.zeros_like(source.held[id(image)])  # generation reads the source too
    seen = []
    original = tiny_model.pack
    monkeypatch.setattr(
        tiny_model, "pack", lambda turns, embeds, **kw: seen.extend(embeds) or original(turns, embeds, **kw)
    )
    messages = [{"role": "user", "content": [{"type": "image", "media": image}, {"type": "text", "text": "hi"}]}]
    tiny_model.generate(messages, max_new_tokens=1)
    zeros = tiny_model.encode_media("image", [image])
    assert torch.equal(seen[0], zeros[0]) and not torch.equal(zeros, direct)


def test_an_unread_item_the_source_lacks_is_a_clear_error(tiny_model, monkeypatch):
    monkeypatch.setattr(tiny_model, "feature_source", RecordingSource())
    with pytest.raises(NextGPTError, match="no media item and no stored features for abc123"):
        tiny_model.media_features("image", [None], keys=["abc123"])
    with pytest.raises(ValueError, match="1 items but 2 keys"):
        tiny_model.media_features("image", [None], keys=["a", "b"])


# -- portable folders ---------------------------------------------------------------------------------


def _folder_with_sources(tiny_model, directory: Path, sources: dict[str, str]) -> Path:
    """A model folder of the tiny model's trained tensors whose config names ``sources``
    (``llm`` and ``<modality>.<encoder|decoder>``), written by `write_pretrained`."""
    raw = tiny_model.config.model_dump(mode="json")
    for where, source in sources.items():
        if where == "llm":
            raw["llm"]["source"] = source
        else:
            modality, part = where.split(".")
            raw["modalities"][modality][part]["source"] = source
    tokens = {name: spec.signal_tokens.tokens for name, spec in tiny_model.specs.items()}
    return write_pretrained(
        directory,
        NextGPTConfig.model_validate(raw),
        tokens,
        tiny_model.all_signal_ids,
        tiny_model.trainable_state_dict(),
    )


def test_sources_inside_the_folder_are_relative_and_follow_it(tiny_model, tmp_path, monkeypatch):
    from nextgpt.tiny.llm import tiny_llm_path

    folder = tmp_path / "model"
    shutil.copytree(tiny_llm_path(), folder / "llm")
    (folder / "decoders" / "sd").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere" / "sd"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    _folder_with_sources(
        tiny_model,
        folder,
        {
            "llm": str(folder / "llm"),  # inside, absolute: becomes ./llm
            "image.decoder": "model/decoders/sd",  # inside, relative to the working folder
            "audio.decoder": str(elsewhere),  # outside, absolute: as given
            "video.decoder": "./elsewhere/sd",  # outside, relative to the working folder: made absolute
            "image.encoder": "tiny",  # a name: as given
            "audio.encoder": "org/some-model",  # a hub id: as given
        },
    )
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION == 3
    written = meta["config"]
    assert written["llm"]["source"] == "./llm" and meta["frozen"]["llm"] == "./llm"
    mods = written["modalities"]
    assert mods["image"]["decoder"]["source"] == "./decoders/sd"
    assert mods["audio"]["decoder"]["source"] == str(elsewhere)
    assert mods["video"]["decoder"]["source"] == str(elsewhere.absolute())
    assert (mods["image"]["encoder"]["source"], mods["audio"]["encoder"]["source"]) == ("tiny", "org/some-model")

    moved = shutil.move(folder, tmp_path / "moved" / "model")
    config = read_model_folder(moved).config
    assert config.llm.source == str(Path(moved).resolve() / "llm")
    assert config.modalities["image"]["decoder"]["source"] == str(Path(moved).resolve() / "decoders" / "sd")
    assert config.modalities["audio"]["encoder"]["source"] == "org/some-model"


def test_older_folders_keep_their_sources_as_written(tiny_model, tmp_path):
    folder = _folder_with_sources(tiny_model, tmp_path / "model", {"image.decoder": str(tmp_path / "sd")})
    meta = json.loads((folder / "config.json").read_text())
    meta["format_version"] = 2
    meta["config"]["llm"]["source"] = "./llm"  # format 2 had no folder-relative sources: read as given
    (folder / "config.json").write_text(json.dumps(meta))
    config = read_model_folder(folder).config
    assert config.llm.source == "./llm"
    assert config.modalities["image"]["decoder"]["source"] == str(tmp_path / "sd")


def test_a_moved_folder_loads_with_a_subset_of_its_modalities(tiny_model, registry, tmp_path):
    from nextgpt.tiny.llm import tiny_llm_path

    folder = tmp_path / "model"
    shutil.copytree(tiny_llm_path(), folder / "llm")
    _folder_with_sources(tiny_model, folder, {"llm": str(folder / "llm")})
    moved = Path(shutil.move(folder, tmp_path / "moved"))
    model = NextGPTModel.from_pretrained(moved, registry=registry, modalities=["image"])
    assert model.config.llm.source == str(moved.resolve() / "llm")
    assert list(model.specs) == ["image"] and sorted(model.inactive_ids) == ["audio", "video"]
    assert model.all_signal_ids == tiny_model.all_signal_ids
    state, original = model.trainable_state_dict(), tiny_model.trainable_state_dict()
    assert set(state) == set(original)  # the left-out modalities' tensors are kept and saved again
    assert all(torch.equal(state[k], original[k]) for k in original)


def test_modalities_for_a_folder_are_checked_before_building(tiny_model, registry, tmp_path, monkeypatch):
    folder = _folder_with_sources(tiny_model, tmp_path / "model", {})
    monkeypatch.setattr(NextGPTModel, "__init__", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(ConfigError, match=r"modalities: .*config.json has no modality 'imgae'; did you mean 'image'"):
        NextGPTModel.from_pretrained(folder, registry=registry, modalities=["imgae"])
    with pytest.raises(ConfigError, match=r"decoders.audio: modality 'audio' is left out of this model"):
        NextGPTModel.from_pretrained(
            folder, registry=registry, modalities=["image"], decoders={"audio": {"backend": "audioldm"}}
        )


# -- one rule, one map ----------------------------------------------------------------------------------


def test_one_rule_tells_paths_from_hub_ids(tmp_path, monkeypatch):
    from nextgpt.hub import is_bare_name, looks_like_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "weights.pth").write_bytes(b"")
    for path in ("/abs/x", "./x", "../x", "~/x", "a/b/c", "a\\b", "weights.pth", "models/missing"):
        assert looks_like_path(path), path
    for hub_id in ("gpt2", "org/name", "stable-diffusion-v1-5/stable-diffusion-v1-5"):
        assert not looks_like_path(hub_id), hub_id
    assert [is_bare_name(s) for s in ("tiny", "toy", "org/name", "./x", "~x", "")] == [1, 1, 0, 0, 0, 0]


def test_one_dtype_map_for_the_llm_the_decoders_and_the_converter():
    import nextgpt.decoders
    import nextgpt.legacy.convert
    import nextgpt.llm
    from nextgpt.dtypes import DTYPES, dtype_name, parse_dtype

    assert nextgpt.decoders.parse_dtype is parse_dtype and nextgpt.llm.parse_dtype is parse_dtype
    assert nextgpt.legacy.convert.DTYPES is DTYPES
    assert parse_dtype("float16") is parse_dtype("torch.float16") is parse_dtype(torch.float16) is torch.float16
    assert dtype_name(torch.bfloat16) == "bfloat16" and dtype_name(torch.int8) is None
    with pytest.raises(ConfigError, match=r"llm.dtype: expected one of \['bfloat16', 'float16', 'float32'\]"):
        parse_dtype("half", "llm.dtype")


def test_training_a_subset_of_a_folders_modalities_reads_only_their_data(tiny_model, tmp_path):
    from nextgpt.training.module import NextGPTLightningModule

    folder = _folder_with_sources(tiny_model, tmp_path / "model", {})
    assert NextGPTLightningModule(str(folder)).enabled_modalities() == list(tiny_model.config.modalities)
    assert NextGPTLightningModule(str(folder), modalities=["audio"]).enabled_modalities() == ["audio"]
