"""Faults and bad input, met the way a user meets them: nothing runs that should not, nothing is
lost. One test (or a few) per defect of the fault probe, then its siblings elsewhere in the code.
Command-line paths go through `nextgpt.cli.main`, the function behind the ``nextgpt`` command.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from media_fixtures import write_test_audio, write_test_image, write_test_video
from nextgpt.cli import main
from nextgpt.errors import ConfigError, MediaError

PLUGINS = ["image", "audio", "video"]
REPO = Path(__file__).parents[1]
TINY_STAGE1 = REPO / "examples" / "configs" / "tiny_stage1.yaml"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only slow a busy machine down
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working folder with the three in-repo plugins, as a user's shell would be."""
    monkeypatch.setenv("NEXTGPT_PLUGINS", ",".join(PLUGINS))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def data(tmp_path_factory, registry):
    """Six pair records (two per modality) of the synthetic data set."""
    from nextgpt.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("data")
    return write_synthetic_dataset(root, {n: registry.modality(n) for n in PLUGINS}, per_modality=2)


def fit_args(pairs: Path, *extra: str) -> list[str]:
    """``nextgpt fit`` on the tiny stage-1 config over ``pairs``, without a progress bar."""
    train = json.dumps([{"path": str(pairs), "format": "pairs", "task": "caption"}])
    return ["fit", "--config", str(TINY_STAGE1), "--data.train", train, "--trainer.enable_progress_bar=false", *extra]


def trained_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# -- 1. nothing loads pickles ---------------------------------------------------------------------


class _RunsCode:
    """Pickled as a call to ``open(marker, "w")``: loading it with weights_only=False creates the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_export_refuses_a_checkpoint_that_would_run_code(workdir, capsys):
    marker = workdir / "marker"
    torch.save({"nextgpt": _RunsCode(marker), "state_dict": {}}, workdir / "crafted.ckpt")
    assert main(["export", "crafted.ckpt", "out"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "crafted.ckpt" in err and "refused" in err and len(err.splitlines()) == 1
    assert not marker.exists() and not (workdir / "out").exists()


def test_fit_refuses_weights_only_false_and_unsafe_or_damaged_checkpoints(workdir, data, capsys):
    assert main(fit_args(data["pairs"], "--weights_only", "false")) == 1
    assert "error: --weights_only false: refused" in capsys.readouterr().err
    marker = workdir / "marker"
    torch.save({"nextgpt": _RunsCode(marker), "state_dict": {}}, workdir / "crafted.ckpt")
    assert main(fit_args(data["pairs"], "--ckpt_path", "crafted.ckpt")) == 1
    assert "crafted.ckpt: refused" in capsys.readouterr().err and not marker.exists()
    (workdir / "cut.ckpt").write_bytes((workdir / "crafted.ckpt").read_bytes()[:200])
    assert main(fit_args(data["pairs"], "--ckpt_path", "cut.ckpt")) == 1
    assert "cut.ckpt: cannot read the checkpoint (truncated" in capsys.readouterr().err
    assert not (workdir / "outputs").exists() or not list((workdir / "outputs").rglob("*.ckpt"))


_SOURCES = [
    p
    for root in ("core/src", "plugins", "examples", "benchmarks", "tests")
    for p in sorted((REPO / root).rglob("*"))
    if p.suffix in (".py", ".tmpl") and "/build/" not in str(p)
]


def test_no_code_unpickles_a_file():
    """Every ``torch.load`` passes ``weights_only=True``; nothing uses pickle, dill, joblib or
    ``allow_pickle=True`` to read files."""
    unsafe = re.compile(
        r"\bpickle\.loads?\(|\bcloudpickle\b|\bdill\b|\bjoblib\.load\b|allow_pickle\s*=\s*True|read_pickle"
    )
    problems = []
    for path in _SOURCES:
        text = path.read_text(encoding="utf-8")
        if path.name == Path(__file__).name:
            continue  # this file names the patterns
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.end() : match.end() + 300].split("torch.load(")[0]
            if "weights_only=True" not in call:
                problems.append(f"{path.relative_to(REPO)}: torch.load without weights_only=True")
        problems += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in unsafe.finditer(text)]
    assert not problems, problems
    assert len(_SOURCES) > 50  # the scan saw the code


# -- 2. non-finite media, features, losses and weights ------------------------------------------------


def nan_wav(path: Path) -> Path:
    import soundfile as sf

    samples = np.sin(np.linspace(0, 100, 16000)).astype(np.float32)
    samples[4000:4010] = np.nan
    samples[5000] = np.inf
    sf.write(str(path), samples, 16000, subtype="FLOAT")
    return path


def test_chat_refuses_a_sound_with_nan_samples(workdir, capsys):
    nan_wav(workdir / "nan.wav")
    assert main(["chat", "-p", "what is this?", "--audio", "nan.wav", "--out", "o"]) == 1
    err = capsys.readouterr().err
    assert "nan.wav" in err and "NaN or infinite" in err and len(err.splitlines()) == 1
    assert not (workdir / "o").exists()


def test_non_finite_media_passed_in_memory_are_refused(tiny_model):
    from nextgpt_audio.media import AudioClip

    clip = AudioClip(np.full(16000, np.nan, dtype=np.float32), 16000)
    message = {"role": "user", "content": [{"type": "audio", "media": clip}, {"type": "text", "text": "hi"}]}
    with pytest.raises(MediaError, match=r"media input 0 \(audio\).*NaN or infinite"):
        tiny_model.generate([message])


def test_training_stops_on_non_finite_weights_naming_the_records(workdir, data, capsys):
    """A learning rate that blows the weights up: the run stops with the batch's records, and
    no checkpoint holds a NaN or infinite weight."""
    assert main(fit_args(data["pairs"], "--model.lr", "1e18", "--trainer.max_steps=6")) == 1
    err = capsys.readouterr().err
    assert re.search(r"error: (optimizer step \d+ made trained weights NaN or infinite|the loss is not finite)", err)
    assert re.search(r"the batch's records: .*pairs\.json:\d", err), err
    for ckpt in (workdir / "outputs").rglob("*.ckpt"):
        assert all(torch.isfinite(v).all() for v in trained_state(ckpt).values()), ckpt


def test_non_finite_parameters_names_exactly_the_broken_ones():
    """The per-step check: one fused norm in the common case, and when it is not finite (a NaN,
    an infinity, or finite weights so large that the norm overflows) each parameter decides."""
    from nextgpt.training.checks import non_finite_parameters

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
    model[2].requires_grad_(False)
    assert non_finite_parameters(model) == []
    with torch.no_grad():
        model[0].weight.fill_(3e38)  # finite, but its norm overflows
        model[2].bias[0] = float("nan")  # frozen: not checked
    assert non_finite_parameters(model) == []
    with torch.no_grad():
        model[1].bias[1] = float("inf")
    assert non_finite_parameters(model) == ["1.bias"]


def test_non_finite_loss_stops_training_naming_the_records(tiny_model):
    from nextgpt.data.dataset import Sample, SampleBatch
    from nextgpt.templates import Turn
    from nextgpt.training.module import NextGPTLightningModule, NonFiniteTrainingError
    from nextgpt_audio.media import AudioClip

    module = NextGPTLightningModule("tiny", stage=1, plugins=PLUGINS)
    module.model = tiny_model  # the step only reads it
    clip = AudioClip(np.full(16000, np.inf, dtype=np.float32), 16000)
    sample = Sample(
        turns=[Turn(role="user", text="<audio> Generate a caption."), Turn(role="assistant", text="a tone")],
        media=[("audio", clip)],
        source="data.json:7",
    )
    with pytest.raises(NonFiniteTrainingError, match=r"loss is not finite.*data\.json:7"):
        module.training_step(SampleBatch([sample]), 0)


# -- 3. media that fail to decode during training follow on_bad_record --------------------------------


def test_undecodable_media_met_in_a_batch_are_skipped(workdir, data, registry):
    from nextgpt.data.synthetic import write_synthetic_dataset
    from nextgpt.errors import SkippedRecordWarning

    root = workdir / "bad_data"
    pairs = write_synthetic_dataset(root, {n: registry.modality(n) for n in PLUGINS}, per_modality=2)["pairs"]
    records = json.loads(pairs.read_text())
    audio = next(r for r in records if "audio_name" in r)
    video = next(r for r in records if "video_name" in r)
    (root / audio["audio_name"]).write_bytes(b"")  # an empty sound
    mp4 = (root / video["video_name"]).read_bytes()
    (root / video["video_name"]).write_bytes(mp4[: len(mp4) // 3])  # a truncated video
    with pytest.warns(SkippedRecordWarning) as caught:
        assert main(fit_args(pairs, "--trainer.max_steps=6", "--data.batch_size=1")) == 0  # bad batches go empty
    skipped = [str(w.message) for w in caught if issubclass(w.category, SkippedRecordWarning)]
    assert any(audio["audio_name"] in m and "empty" in m for m in skipped), skipped
    assert any(video["video_name"] in m and "pairs.json: record" in m for m in skipped), skipped
    assert torch.load(workdir / "outputs/tiny_stage1/checkpoints/last.ckpt", weights_only=True)["global_step"] == 6


def test_on_bad_record_error_still_stops_at_the_first_undecodable_file(workdir, registry, capsys):
    from nextgpt.data.synthetic import write_synthetic_dataset

    root = workdir / "bad_data"
    pairs = write_synthetic_dataset(root, {n: registry.modality(n) for n in PLUGINS}, per_modality=1)["pairs"]
    (root / "media" / "audio_0.wav").write_bytes(b"")
    assert main(fit_args(pairs, "--trainer.max_steps=2", "--data.on_bad_record=error")) == 1
    assert "audio_0.wav: file is empty (record" in capsys.readouterr().err


# -- 4. outputs are never overwritten ----------------------------------------------------------------


def test_chat_runs_into_the_same_folder_keep_every_file(workdir, tiny_model, capsys, monkeypatch):
    for _ in range(2):
        assert main(["chat", "-p", "hi", "--request", "image", "--out", "o"]) == 0
    assert sorted(p.name for p in (workdir / "o").iterdir()) == ["turn1_image_0-1.png", "turn1_image_0.png"]
    # and within one interactive chat, /reset starts the turn count again
    from nextgpt.cli.chat_cmd import ChatSession

    session = ChatSession(tiny_model, workdir / "o")
    lines = iter(["hi", "/reset", "/request image", "hi", "/quit"])
    with open(os.devnull, "w") as stdout:
        session.interactive(lines, stdout, [], ["image"])
    names = sorted(p.name for p in (workdir / "o").iterdir())
    assert names == [f"turn1_image_0{n}.png" for n in ("-1", "-2", "-3", "")]


def test_export_and_convert_refuse_a_folder_that_holds_files(workdir, data, capsys):
    assert main(fit_args(data["pairs"], "--trainer.max_steps=2")) == 0
    ckpt = "outputs/tiny_stage1/checkpoints/last.ckpt"
    (workdir / "model").mkdir()
    (workdir / "model" / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["export", ckpt, "model"]) == 1
    assert "model: already exists and is not empty" in capsys.readouterr().err
    assert main(["export", ckpt, "model", "--overwrite"]) == 0
    assert (workdir / "model" / "notes.txt").read_text() == "mine"  # nothing else is touched
    assert main(["convert-legacy", "x.pt", "--vicuna", "v", "--imagebind", "i", "model"]) == 1
    assert "model: already exists and is not empty" in capsys.readouterr().err


def test_fit_refuses_to_write_over_an_earlier_runs_checkpoints(workdir, data, capsys):
    assert main(fit_args(data["pairs"], "--trainer.max_steps=2")) == 0
    before = (workdir / "outputs/tiny_stage1/checkpoints/last.ckpt").read_bytes()
    capsys.readouterr()
    assert main(fit_args(data["pairs"], "--trainer.max_steps=2")) == 1
    assert "holds checkpoints of an earlier run" in capsys.readouterr().err
    assert (workdir / "outputs/tiny_stage1/checkpoints/last.ckpt").read_bytes() == before
    assert main(fit_args(data["pairs"], "--trainer.max_steps=2", "--overwrite", "true")) == 0


def test_eval_refuses_to_replace_a_results_file(workdir, data, capsys):
    (workdir / "results.json").write_text("{}")
    args = ["eval", "--model", "tiny", "--task", "caption", "--modality", "image", "--data", str(data["pairs"])]
    assert main([*args, "--json", "results.json", "--quiet"]) == 1
    assert "results.json: already exists" in capsys.readouterr().err
    assert (workdir / "results.json").read_text() == "{}"


# -- 5. file-system errors: one line naming the path; chat keeps its history ------------------------


def test_chat_out_that_is_a_file_is_refused_before_the_model_loads(workdir, capsys, monkeypatch):
    (workdir / "taken").write_text("a file")
    monkeypatch.setattr("nextgpt.cli.chat_cmd.load_model_from_args", lambda args: pytest.fail("the model was loaded"))
    assert main(["chat", "-p", "hi", "--request", "image", "--out", "taken"]) == 1
    assert capsys.readouterr().err == "error: taken: the --out folder is a file, not a folder\n"
    assert main(["chat", "-p", "hi", "--out", "taken/sub"]) == 1
    assert "lies under the file taken" in capsys.readouterr().err


def test_interactive_chat_keeps_its_history_through_a_file_system_error(workdir, tiny_model):
    import io

    from nextgpt.cli.chat_cmd import ChatSession

    out = workdir / "o"
    session = ChatSession(tiny_model, out)
    stdout = io.StringIO()

    def lines():
        yield "hello"
        out.write_text("not a folder")  # --out is replaced by a file mid-conversation
        yield "/request image"
        yield "draw it"
        out.unlink()
        yield "/request image"
        yield "draw it again"

    session.interactive(lines(), stdout, [], [])
    text = stdout.getvalue()
    assert f"error: {out}: the output folder is a file, not a folder (conversation kept: 1 turns)" in text
    assert len(session.history) == 4 and (out / "turn2_image_0.png").is_file()


# -- 6. model folders: checksum and format version ------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tiny_model, tmp_path_factory):
    return tiny_model.save_pretrained(tmp_path_factory.mktemp("saved") / "model")


@pytest.mark.parametrize(
    "damage", ["truncated", "flipped byte", "bad header", "truncated v1", "format 99", "NaN weight"]
)
def test_damaged_model_folders_are_refused_naming_the_file(workdir, saved_model, damage, capsys, monkeypatch):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(saved_model, workdir / "model")
    weights, config = folder / "model.safetensors", folder / "config.json"
    data = weights.read_bytes()
    expected = str(weights)
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "flipped byte":
        weights.write_bytes(data[:-10] + bytes([data[-10] ^ 0x40]) + data[-9:])
    elif damage == "bad header":
        weights.write_bytes(b"\xff" * 8 + data[8:])
    elif damage == "truncated v1":  # a folder of format 1 has no checksum: safetensors finds the damage
        meta = json.loads(config.read_text())
        meta["format_version"] = 1
        del meta["weights_sha256"]
        config.write_text(json.dumps(meta))
        weights.write_bytes(data[: len(data) // 2])
        expected = f"{weights}: not a readable safetensors file"
    elif damage == "format 99":
        from nextgpt.model_folder import FORMAT_VERSION

        config.write_text(config.read_text().replace(f'"format_version": {FORMAT_VERSION}', '"format_version": 99'))
        expected = f"{config}: format_version 99 is newer than this nextgpt reads"
    else:  # a NaN weight saved by hand: checksum and format are right, the values are not
        from nextgpt.model_folder import file_sha256

        state = load_file(str(weights))
        key = sorted(state)[0]
        state[key][0] = float("nan")
        save_file(state, str(weights), metadata={"format": "pt"})
        meta = json.loads(config.read_text())
        meta["weights_sha256"] = file_sha256(weights)
        config.write_text(json.dumps(meta))
        expected = f"{key} holds NaN or infinite values"
    assert main(["chat", "--model", str(folder), "-p", "hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1, err


def test_a_damaged_weights_file_is_found_before_the_model_is_built(saved_model, workdir, monkeypatch):
    import shutil

    from nextgpt.model import NextGPTModel

    folder = shutil.copytree(saved_model, workdir / "model")
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:100])
    monkeypatch.setattr(NextGPTModel, "__init__", lambda *a, **k: pytest.fail("the model was built"))
    with pytest.raises(ConfigError, match="do not match the checksum"):
        NextGPTModel.from_pretrained(folder)


# -- 7. resume equals the uninterrupted run; Ctrl-C saves the step reached ------------------------------


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(workdir, data, monkeypatch):
    """Six samples in batches of two: three steps an epoch. Ctrl-C after step 2 (mid-epoch)
    saves ``interrupted.ckpt``; ``--ckpt_path last`` resumes from it to the same weights as a
    run that was never interrupted."""
    import signal

    from nextgpt.errors import NextGPTWarning

    steps = ["--trainer.max_steps=5", "--data.batch_size=2", "--data.shuffle=true"]
    assert main(fit_args(data["pairs"], *steps)) == 0
    uninterrupted = trained_state(workdir / "outputs/tiny_stage1/checkpoints/last.ckpt")
    for path in (workdir / "outputs/tiny_stage1/checkpoints").iterdir():
        path.unlink()

    interrupt = '{"class_path": "fault_helpers.InterruptAt", "init_args": {"step": 2}}'
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.warns(NextGPTWarning, match=r"stopped after 2 steps \(Ctrl-C\): saved .*interrupted\.ckpt"):
            with pytest.raises(SystemExit):  # Lightning exits after a KeyboardInterrupt, as `nextgpt fit` does
                main(fit_args(data["pairs"], *steps, f"--trainer.callbacks+={interrupt}"))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl-C from then on
    saved = workdir / "outputs/tiny_stage1/checkpoints/interrupted.ckpt"
    assert torch.load(saved, weights_only=True)["global_step"] == 2

    assert main(fit_args(data["pairs"], *steps, "--ckpt_path", "last")) == 0
    resumed = trained_state(workdir / "outputs/tiny_stage1/checkpoints/last.ckpt")
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key


def test_resuming_with_more_steps_keeps_the_checkpoints_schedule(workdir, data):
    """The tiny config's linear schedule over 2 steps ends at a rate of 0: resumed with
    ``max_steps=4`` the schedule keeps its length (with a warning), so the weights stay put."""
    from nextgpt.errors import NextGPTWarning

    assert main(fit_args(data["pairs"], "--trainer.max_steps=2")) == 0
    after_two = trained_state(workdir / "outputs/tiny_stage1/checkpoints/last.ckpt")
    with pytest.warns(NextGPTWarning, match="keeps the checkpoint's length of 2 steps"):
        assert main(fit_args(data["pairs"], "--trainer.max_steps=4", "--ckpt_path", "last")) == 0
    after_four = torch.load(workdir / "outputs/tiny_stage1/checkpoints/last.ckpt", weights_only=True)
    assert after_four["global_step"] == 4
    for key, value in after_two.items():
        assert torch.equal(after_four["state_dict"][key], value), key
    # an explicit --model.schedule_steps stretches it, also with a checkpoint named by its path
    step_two = next((workdir / "outputs/tiny_stage1/checkpoints").glob("*step=2.ckpt"))
    args = ["--trainer.max_steps=4", "--model.schedule_steps=4", "--ckpt_path", str(step_two)]
    with pytest.warns(NextGPTWarning, match="changes from the checkpoint's 2 steps"):
        assert main(fit_args(data["pairs"], *args)) == 0
    stretched = trained_state(
        max((workdir / "outputs/tiny_stage1/checkpoints").glob("*step=4*.ckpt"), key=os.path.getmtime)
    )
    assert any(not torch.equal(stretched[key], value) for key, value in after_two.items())


def test_schedule_steps_changes_the_length_on_resume_explicitly():
    from nextgpt.errors import NextGPTWarning
    from nextgpt.training.module import NextGPTLightningModule

    module = NextGPTLightningModule("tiny", warmup_steps=1)
    module._saved_schedule = {"total_steps": 2, "warmup_steps": 1}
    with pytest.warns(NextGPTWarning, match="keeps the checkpoint's length of 2 steps"):
        assert module.schedule_length() == (2, 1)
    module.hparams.schedule_steps = 8
    with pytest.warns(NextGPTWarning, match="changes from the checkpoint's 2 steps"):
        assert module.schedule_length() == (8, 1)


# -- 8. smaller ones -------------------------------------------------------------------------------------


def test_an_over_long_prompt_is_cut_with_a_warning(tiny_model):
    from nextgpt.errors import PromptTruncatedWarning

    text = "tell me a story " * 6000  # ~100k characters, far beyond the tiny LLM's 512 positions
    message = {"role": "user", "content": [{"type": "text", "text": text}]}
    with pytest.warns(PromptTruncatedWarning, match="cut the last message's text to its first"):
        out = tiny_model.generate([message], max_new_tokens=4)
    assert out.notes and "512" in out.notes[0]


def test_an_over_long_history_drops_the_oldest_exchanges_first(tiny_model):
    from nextgpt.errors import PromptTruncatedWarning

    long_turn = "words " * 300
    history = []
    for i in range(4):
        history += [{"role": "user", "content": f"question {i} {long_turn}"}, {"role": "assistant", "content": "ok"}]
    history.append({"role": "user", "content": "the last question"})
    with pytest.warns(PromptTruncatedWarning, match=r"dropped the \d+ oldest turn"):
        out = tiny_model.generate(history, max_new_tokens=4)
    assert "cut" not in out.notes[0]


def test_the_context_rule_drops_whole_exchanges_oldest_first_then_cuts_the_last_text():
    from nextgpt.context import fit_to_context
    from nextgpt.templates import Turn

    placeholder = re.compile(r"<image>")
    turns = [
        Turn(role="user", text="<image> first " + "x" * 40),
        Turn(role="assistant", text="a1"),
        Turn(role="user", text="second " + "y" * 40),
        Turn(role="assistant", text="a2 <image>"),
        Turn(role="user", text="<image> last " + "z" * 100),
    ]
    media = ["m1", "m2", "m3"]

    def length(candidate, items):  # a character counts one position, a media item ten
        assert len(items) == sum(len(placeholder.findall(t.text)) for t in candidate)
        return sum(len(placeholder.sub("", t.text)) for t in candidate) + 10 * len(items)

    kept, kept_media, note = fit_to_context(turns, media, placeholder, length, budget=180)
    assert [t.text[:6] for t in kept] == ["second", "a2 <im", "<image"] and kept_media == ["m2", "m3"]
    assert note.startswith("the prompt takes") and "dropped the 2 oldest turn(s)" in note
    kept, kept_media, note = fit_to_context(turns, media, placeholder, length, budget=60)
    assert len(kept) == 1 and kept_media == ["m3"] and kept[0].text.startswith("<image> last zzz")
    assert length(kept, kept_media) <= 60 and "dropped the 4 oldest turn(s); cut the last message's text" in note
    assert fit_to_context(turns, media, placeholder, length, budget=1000) == (turns, media, None)


def test_max_new_tokens_must_leave_room_for_the_prompt(tiny_model):
    with pytest.raises(ConfigError, match="leaves no room"):
        tiny_model.generate([{"role": "user", "content": "hi"}], max_new_tokens=600)
    with pytest.raises(ConfigError, match="max_new_tokens: expected a positive number"):
        tiny_model.generate([{"role": "user", "content": "hi"}], max_new_tokens=-1)


def _png_header_claiming(path: Path, width: int, height: int) -> Path:
    """A 1 x 1 PNG whose header claims ``width x height``: Pillow reads the size, not the pixels."""
    write_test_image(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def test_large_images_are_refused_as_too_large_or_reduced_while_decoding(tmp_path, monkeypatch):
    from nextgpt_image.media import MAX_PIXELS_ENV, load_image
    from PIL import Image

    huge = _png_header_claiming(tmp_path / "huge.png", 30000, 30000)
    with pytest.raises(MediaError, match="too large"):
        load_image(huge)
    Image.new("RGB", (2000, 1600), (10, 200, 30)).save(tmp_path / "big.png")
    Image.new("RGB", (2000, 1600), (10, 200, 30)).save(tmp_path / "big.jpg", quality=90)
    monkeypatch.setenv(MAX_PIXELS_ENV, str(300 * 300))
    with pytest.raises(MediaError, match=r"too large: 2000 x 1600 = 3,200,000 pixels .* NEXTGPT_MAX_IMAGE_PIXELS"):
        load_image(tmp_path / "big.png", max_side=250)
    # the JPEG decoder reduces by 8 while decoding: 250 x 200 pixels, under the limit
    small = load_image(tmp_path / "big.jpg", max_side=250)
    assert small.size == (250, 200) and small.getpixel((100, 100))[1] > 150
    monkeypatch.delenv(MAX_PIXELS_ENV)
    assert load_image(tmp_path / "big.png", max_side=500).size == (500, 400)


def test_a_data_file_that_is_not_utf8_is_named(workdir, data, capsys):
    bad = workdir / "pairs.json"
    bad.write_bytes(b'[{"caption": "caf\xe9", "image_name": "media/image_0.png"}]')  # Latin-1, not UTF-8
    assert main(fit_args(bad)) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: the data file is not UTF-8 text (byte 0xe9" in err, err


def test_a_negative_batch_size_is_refused_before_the_model_is_built(workdir, data, capsys, monkeypatch):
    from nextgpt.model import NextGPTModel

    monkeypatch.setattr(NextGPTModel, "__init__", lambda *a, **k: pytest.fail("the model was built"))
    assert main(fit_args(data["pairs"], "--data.batch_size=-1")) == 1
    assert "error: data.batch_size: expected a positive number of samples, got -1\n" in capsys.readouterr().err
    assert main(fit_args(data["pairs"], "--model.lr=-0.1")) == 1
    assert "model.lr: expected a positive number" in capsys.readouterr().err


LOADERS = {
    "image": ("nextgpt_image.media", "load_image", ".png", write_test_image),
    "audio": ("nextgpt_audio.media", "load_audio", ".wav", write_test_audio),
    "video": ("nextgpt_video.media", "load_video", ".mp4", write_test_video),
    "3d": ("nextgpt_3d.media", "load_3d", ".npy", lambda p: np.save(p, np.random.rand(16, 3)) or p),
}


def _loader(name: str):
    import importlib

    module, function, suffix, writer = LOADERS[name]
    return getattr(importlib.import_module(module), function), suffix, writer


@pytest.mark.parametrize("modality", sorted(LOADERS))
def test_folders_and_symlink_loops_are_named_as_such(tmp_path, modality):
    load, suffix, _ = _loader(modality)
    folder = tmp_path / f"x{suffix}"
    folder.mkdir()
    with pytest.raises(MediaError, match="is a folder, not a"):
        load(folder)
    loop = tmp_path / f"loop{suffix}"
    loop.symlink_to(loop)
    with pytest.raises(MediaError, match="symbolic-link loop"):
        load(loop)
    dangling = tmp_path / f"dangling{suffix}"
    dangling.symlink_to(tmp_path / "gone")
    with pytest.raises(MediaError, match="broken symbolic link"):
        load(dangling)


def _as_unprivileged(function, *args) -> str:
    """Run ``function(*args)`` where file permissions apply (a forked child that drops root) and
    return the message of the MediaError it raises ("" if none)."""
    if os.geteuid() != 0:
        try:
            function(*args)
        except MediaError as exc:
            return str(exc)
        return ""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become "nobody", try, report, leave without running pytest's exit
        message = b""
        try:
            os.setgid(65534)
            os.setuid(65534)
            function(*args)
        except MediaError as exc:
            message = str(exc).encode()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as a failure
            message = f"UNEXPECTED {type(exc).__name__}: {exc}".encode()
        os.write(write, message)
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.mark.parametrize("modality", sorted(LOADERS))
def test_a_permission_error_reads_as_one(tmp_path_factory, modality):
    import tempfile

    load, suffix, writer = _loader(modality)
    folder = Path(tempfile.mkdtemp(prefix="nextgpt-perm-"))
    try:
        folder.chmod(0o755)
        path = writer(folder / f"locked{suffix}")
        path.chmod(0o000)
        message = _as_unprivileged(load, path)
        assert str(path) in message and "cannot read: Permission denied" in message, message
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def test_chat_names_a_folder_called_like_a_picture(workdir, capsys):
    (workdir / "x.png").mkdir()
    assert main(["chat", "-p", "hi", "--image", "x.png"]) == 1
    assert capsys.readouterr().err == "error: x.png: is a folder, not a file\n"


# -- siblings found elsewhere ---------------------------------------------------------------------------


def test_a_symlink_loop_in_a_data_set_is_a_bad_record_not_a_crash(tmp_path, registry):
    from nextgpt.data import DatasetSource, read_records

    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "d.json").write_text(json.dumps([{"caption": "c", "image_name": "loop.png"}]))
    specs = {n: registry.modality(n) for n in PLUGINS}
    with pytest.warns(UserWarning, match="skipped 1 bad record"):
        records, bad = read_records(DatasetSource(path=str(tmp_path / "d.json")), specs)
    assert not records and "loop.png" in bad[0].reason


def test_generated_sounds_with_nan_are_not_written(tmp_path):
    from nextgpt_audio.media import AudioClip, save_audio

    with pytest.raises(MediaError, match="NaN or infinite"):
        save_audio(AudioClip(np.array([0.0, np.nan], dtype=np.float32), 16000), tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()


def test_eval_leaves_out_a_file_that_cannot_be_decoded(workdir, data, capsys):
    import shutil

    root = shutil.copytree(data["pairs"].parent, workdir / "d")
    (root / "media" / "image_1.png").write_bytes(b"")
    args = ["eval", "--model", "tiny", "--task", "caption", "--modality", "image", "--data", str(root / "pairs.json")]
    assert main([*args, "--quiet", "--max-new-tokens", "4", "--json", "r.json"]) == 0
    assert "note: left out of the scores: " in capsys.readouterr().err
    report = json.loads((workdir / "r.json").read_text())
    assert [m["n"] for m in report["details"]] == [1, 1, 1]
    assert [i.get("error", "")[-13:] for i in report["items"]] == ["", "file is empty"]


def test_training_samples_longer_than_max_length_are_named(tiny_model):
    from nextgpt.data.dataset import Sample, SampleBatch
    from nextgpt.errors import NextGPTWarning
    from nextgpt.templates import Turn
    from nextgpt.training.module import NextGPTLightningModule

    module = NextGPTLightningModule("tiny", stage=1, plugins=PLUGINS, max_length=16)
    module.model = tiny_model  # the step only reads it
    turns = [Turn(role="user", text="a question"), Turn(role="assistant", text="a long answer " * 10)]
    batch = SampleBatch([Sample(turns=turns, source="d.json:3"), Sample(turns=turns[:1] + [turns[0]], source="d:4")])
    with pytest.warns(NextGPTWarning, match=r"max_length=16 positions are cut .*d\.json:3 \(\d+\)"):
        module.prepare(batch)


def test_a_cache_shard_damaged_after_indexing_is_a_miss_not_a_crash(tmp_path):
    from nextgpt.training.cache import TensorCache, text_key

    cache = TensorCache(tmp_path, "targets", "image", "decoder A", shard_size=1)
    cache.put(text_key("a"), torch.ones(2))  # a full shard: written
    shard = next(cache.directory.glob("*.safetensors"))
    again = TensorCache(tmp_path, "targets", "image", "decoder A")
    shard.write_bytes(shard.read_bytes()[:20])
    with pytest.warns(UserWarning, match="is unreadable and ignored"):
        assert again.get(text_key("a")) is None
    assert text_key("a") not in again
