"""What a newcomer meets in the first hour: errors that say the fix (before anything slow runs),
progress bars, thread defaults, `nextgpt --version`, packaging metadata and file modes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import torch
from nextgpt.errors import ConfigError, UnknownModalityError
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DISTRIBUTIONS = ["core", "plugins/image", "plugins/audio", "plugins/video", "examples/nextgpt-3d", "examples/toy_world"]


def nextgpt(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "NEXTGPT_PLUGINS": "image,audio,video", **(env or {})}
    return subprocess.run(
        [str(BIN / "nextgpt"), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300
    )


# -- errors that say the fix ------------------------------------------------------------------------


def test_typos_get_did_you_mean_before_any_model_loads(tmp_path, monkeypatch, capsys):
    """Sub-commands, model names, --request and attachments are checked before the model is built, and
    each error lists what is available."""
    from nextgpt.cli import main
    from nextgpt.model import NextGPTModel

    monkeypatch.setenv("NEXTGPT_PLUGINS", "image,audio,video")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(NextGPTModel, "from_pretrained", _no_model)

    def error(*argv: str) -> str:
        assert main(list(argv)) in (1, 2)
        return capsys.readouterr().err

    assert error("chta").startswith("error: unknown command 'chta'; did you mean 'chat'? (commands: plugins, chat")
    assert error("chat", "--model", "tny", "-p", "hi").startswith(
        "error: unknown model 'tny'; did you mean 'tiny'?: not a preset (tiny, nextgpt-7b-v0, qwen2.5-7b, open-7b), "
        "a folder, or a named"
    )
    assert error("chat", "-p", "hi", "--request", "imag") == (
        "error: --request: this model cannot generate 'imag'; did you mean 'image'? "
        "(it can generate: audio, image, video)\n"
    )
    assert error("chat", "-p", "hi", "--image", "cat.png") == "error: cat.png: file not found\n"
    assert "provides modality 'imgae'; did you mean 'image'?" in error("chat", "--media", "imgae", "cat.png")


def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded")


def test_a_missing_relative_model_folder_is_an_error_not_a_download(tmp_path, monkeypatch):
    from nextgpt.model_folder import resolve_model_folder

    (tmp_path / "outputs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("huggingface_hub.snapshot_download", _no_network)
    with pytest.raises(ConfigError, match=r"^outputs/x: no such model folder"):
        resolve_model_folder("outputs/x")
    with pytest.raises(ConfigError, match=r"^unknown model 'tinny'; did you mean 'tiny'\?"):
        resolve_model_folder("tinny")


def _no_network(*args, **kwargs):
    raise AssertionError("the network was used")


def test_preset_needing_a_folder_names_its_variable_before_any_network(registry, monkeypatch, tmp_path):
    from nextgpt.model import NextGPTModel
    from nextgpt.presets import VICUNA_V0_ENV

    monkeypatch.delenv(VICUNA_V0_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    with pytest.raises(ConfigError, match=rf"preset 'nextgpt-7b-v0' needs .* set {VICUNA_V0_ENV}=/path/to/folder"):
        NextGPTModel.from_pretrained("nextgpt-7b-v0", registry=registry)
    monkeypatch.setenv(VICUNA_V0_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=rf"{VICUNA_V0_ENV}={tmp_path}: not a folder with a Hugging Face model"):
        NextGPTModel.from_pretrained("nextgpt-7b-v0", registry=registry)


def test_hub_lookups_fail_fast_offline(registry, monkeypatch):
    """HF_HUB_OFFLINE, or a hub that does not answer, is an error at once for an LLM, a decoder or
    a model folder that is not in the local cache (transformers would retry for minutes)."""
    from nextgpt import hub
    from nextgpt.config import LLMConfig
    from nextgpt.llm import load_llm
    from nextgpt.model_folder import resolve_model_folder
    from nextgpt_image.decoder import StableDiffusionDecoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ConfigError, match=r"llm.source: 'someone/some-llm' is not a local folder .* HF_HUB_OFFLINE is set"
    ):
        load_llm(LLMConfig(source="someone/some-llm"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    hub._reachable.cache_clear()
    with pytest.raises(ConfigError, match=r"decoder 'stable-diffusion' source: 'someone/sd' .* cannot be reached"):
        _ = StableDiffusionDecoder("someone/sd").condition_spec
    with pytest.raises(ConfigError, match=r"model: 'someone/folder' .* cannot be reached"):
        resolve_model_folder("someone/folder")
    hub._reachable.cache_clear()


def test_unknown_modality_suggests_instead_of_inventing_a_package(registry):
    with pytest.raises(UnknownModalityError) as info:
        registry.modality("images")
    assert str(info.value) == (
        "no installed plugin provides modality 'images'; did you mean 'image'? (installed: audio, image, video)"
    )
    with pytest.raises(UnknownModalityError, match="install a plugin that provides it"):
        registry.modality("smell")


def test_request_lists_what_can_be_generated(tiny_model):
    message = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    with pytest.raises(
        ConfigError,
        match=r"'vidoe' has no decoder in this model; did you mean 'video'\? \(it can generate: audio, image, video\)",
    ):
        tiny_model.generate(message, request=["vidoe"])


def test_missing_extra_is_one_line_with_the_install_command(monkeypatch, capsys):
    from importlib import metadata

    from nextgpt import extras
    from nextgpt.cli import main

    real = metadata.version

    def without_lightning(name: str) -> str:
        if name == "lightning":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(extras.metadata, "version", without_lightning)
    assert main(["fit", "--config", "x.yaml"]) == 1
    assert capsys.readouterr().err == (
        "error: nextgpt fit needs the 'train' extra (missing: lightning); install it with: "
        'pip install "nextgpt-core[train]"\n'
    )


def test_a_folder_with_an_uninstalled_modality_loads_and_keeps_it(tiny_model, tmp_path):
    """Saved with image, audio and video; loaded where audio is not installed: a warning names
    it, the rest works, and saving again keeps audio's trained tensors for where it is."""
    from nextgpt.model import NextGPTModel, SkippedModalityWarning
    from nextgpt.plugins import load_plugins

    tiny_model.save_pretrained(tmp_path / "full")
    without_audio = load_plugins(allow=["image", "video"])
    with pytest.warns(SkippedModalityWarning, match=r"config.json: modality 'audio' skipped: no installed plugin"):
        partial = NextGPTModel.from_pretrained(tmp_path / "full", registry=without_audio)
    assert sorted(partial.specs) == ["image", "video"] and partial.new_token_ids == tiny_model.new_token_ids
    answer = partial.generate([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], request=["image"])
    assert [m.modality for m in answer.media] == ["image"]
    with pytest.raises(UnknownModalityError, match="'audio'"):
        partial.generate([{"role": "user", "content": [{"type": "audio", "path": "x.wav"}]}])
    partial.save_pretrained(tmp_path / "again")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedModalityWarning)
        restored = NextGPTModel.from_pretrained(tmp_path / "again", registry=tiny_model.registry)
    original = tiny_model.trainable_state_dict()
    assert all(torch.equal(restored.trainable_state_dict()[k], v) for k, v in original.items())


# -- progress --------------------------------------------------------------------------------------


def test_generation_shows_bars_when_asked_and_none_otherwise(tiny_model, capsys, monkeypatch):
    from nextgpt.progress import progress_enabled, set_progress

    message = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    monkeypatch.delenv("NEXTGPT_PROGRESS", raising=False)
    assert not progress_enabled()  # pytest's stderr is not a terminal
    tiny_model.generate(message, request=["image"], max_new_tokens=3)
    assert capsys.readouterr().err == ""
    tiny_model.generate(message, request=["image"], max_new_tokens=3, progress=True)
    shown = capsys.readouterr().err
    assert "LLM tokens:" in shown and "/3 [" in shown and "stable-diffusion denoising:" in shown and "/2 [" in shown
    monkeypatch.setenv("NEXTGPT_PROGRESS", "1")
    assert progress_enabled()
    set_progress(False)  # what --quiet does
    try:
        tiny_model.generate(message, request=["image"], max_new_tokens=3)
        assert capsys.readouterr().err == ""
    finally:
        set_progress(None)


# -- threads ---------------------------------------------------------------------------------------


def test_usable_cpus_follow_the_cgroup_quota_and_affinity(tmp_path, monkeypatch):
    from nextgpt import threads

    monkeypatch.setattr(threads, "affinity_cpus", lambda: 8)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_quota(v2) == 1.5 and threads.usable_cpus(v2) == 2
    (v2 / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_quota(v2) is None and threads.usable_cpus(v2) == 8
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert threads.usable_cpus(v1) == 3
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert threads.usable_cpus(v1) == 8
    assert threads.usable_cpus(tmp_path / "none") == 8
    # other processes' load takes CPUs away, never the last one
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 0.0, 0.0))
    assert threads.default_num_threads(tmp_path / "none") == 5
    monkeypatch.setattr(os, "getloadavg", lambda: (30.0, 0.0, 0.0))
    assert threads.default_num_threads(tmp_path / "none") == 1


def test_thread_choice_order_and_the_lightning_module(monkeypatch):
    from nextgpt import threads
    from nextgpt.training.module import NextGPTLightningModule

    monkeypatch.setattr(threads, "default_num_threads", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.ENV_THREADS, raising=False)
    assert threads.chosen_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert threads.chosen_num_threads() is None  # torch already follows OMP_NUM_THREADS
    monkeypatch.setenv(threads.ENV_THREADS, "3")
    assert threads.chosen_num_threads() == 3 and threads.chosen_num_threads(1) == 1
    monkeypatch.setenv(threads.ENV_THREADS, "many")
    with pytest.raises(ConfigError, match=f"{threads.ENV_THREADS}: expected a positive whole number"):
        threads.chosen_num_threads()
    before = torch.get_num_threads()
    try:
        module = NextGPTLightningModule("tiny", plugins=["image"], num_threads=1)
        module.model = object()  # configure_model sets the threads first, then finds it built
        module.configure_model()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# -- packaging -------------------------------------------------------------------------------------


def test_version_lists_every_distribution_and_plugin(tmp_path):
    out = nextgpt("--version", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("nextgpt (Python 3.") and "torch " in lines[0]
    assert lines[1] == "  nextgpt-core 0.1.0"
    for dist, plugin in (("audio", "audio"), ("image", "image"), ("video", "video"), ("3d", "3d")):
        assert f"  nextgpt-{dist} 0.1.0  plugins: {plugin}" in lines
    assert "  nextgpt-toy-world 0.1.0" in lines  # depends on nextgpt-core, registers no plugin


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []])
def test_version_and_help_do_not_import_the_heavy_libraries(argv):
    """`nextgpt --version` and the command list answer at once: no torch, transformers or diffusers."""
    probe = (
        "import sys\nfrom nextgpt.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'diffusers'})\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-300:]


@pytest.mark.parametrize("folder", DISTRIBUTIONS)
def test_distribution_metadata_is_complete(folder):
    project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert (ROOT / folder / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    assert project["authors"] and project["classifiers"] and project["keywords"]
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(project["urls"])
    readme = (ROOT / folder / project["readme"]).read_text()
    relative = re.findall(r"\]\((?!https?://|#)([^)]*)\)", readme)
    assert not relative, f"{folder}/README.md links {relative}: they break on an index page"
    core_version = tomllib.loads((ROOT / "core" / "pyproject.toml").read_text())["project"]["version"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if requirement.name.startswith("nextgpt-"):
            assert requirement.specifier, f"{folder}: {line} has no version range"
            assert requirement.specifier.contains(core_version), f"{folder}: {line} excludes {core_version}"
            major, minor = (int(x) for x in core_version.split(".")[:2])
            assert not requirement.specifier.contains(f"{major}.{minor + 1}.0"), f"{folder}: {line} is open-ended"


def test_licence_is_apache_2():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_weights_are_written_with_the_default_mode(tiny_model, tmp_path):
    previous = os.umask(0o022)
    try:
        folder = tiny_model.save_pretrained(tmp_path / "saved")
    finally:
        os.umask(previous)
    for name in ("model.safetensors", "config.json"):
        assert (folder / name).stat().st_mode & 0o777 == 0o644, name


def test_scaffolded_plugins_depend_on_a_compatible_core_range(tmp_path):
    from nextgpt import __version__
    from nextgpt.scaffold import compatible_range, scaffold_plugin

    assert compatible_range("0.1.0") == ">=0.1.0,<0.2" and compatible_range("1.2.3") == ">=1.2.3,<2"
    project = tomllib.loads((scaffold_plugin("depth", tmp_path) / "pyproject.toml").read_text())["project"]
    assert f"nextgpt-core{compatible_range(__version__)}" in project["dependencies"]


def test_package_versions_match_their_distributions():
    import nextgpt
    import nextgpt_audio
    import nextgpt_image
    import nextgpt_video

    modules = {"core": nextgpt, "plugins/image": nextgpt_image, "plugins/audio": nextgpt_audio}
    modules["plugins/video"] = nextgpt_video
    for folder, module in modules.items():
        project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
        assert module.__version__ == project["version"], folder
