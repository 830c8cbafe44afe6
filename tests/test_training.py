"""Training: losses, data readers, the LightningModule's stages, checkpoints, resume, CLI configs.

Everything runs on the tiny preset and a synthetic data set made from the plugins' example media.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

PLUGINS = ["image", "audio", "video"]


# -- helpers ----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads; one thread avoids oversubscribing a busy
    CPU (which slows these tests many times over)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def specs(registry):
    return {name: registry.modality(name) for name in sorted(registry.modalities)}


@pytest.fixture(scope="module")
def data(tmp_path_factory, specs):
    from nextgpt.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("data")
    return write_synthetic_dataset(root, specs, per_modality=2)


def make_module(stage, **kwargs):
    from nextgpt.training.module import NextGPTLightningModule

    kwargs.setdefault("warmup_steps", 0)
    kwargs.setdefault("schedule", "constant")
    kwargs.setdefault("lr", 1e-2)
    module = NextGPTLightningModule("tiny", stage=stage, plugins=PLUGINS, **kwargs)
    module.configure_model()
    return module


def make_data(path, fmt="pairs", task="caption", batch_size=6, **kwargs):
    from nextgpt.training.datamodule import NextGPTDataModule

    kwargs.setdefault("shuffle", False)
    return NextGPTDataModule(
        [{"path": str(path), "format": fmt, "task": task}], batch_size=batch_size, plugins=PLUGINS, **kwargs
    )


class LossRecorder:
    """A callback keeping every training step's loss terms."""

    def __new__(cls):
        from lightning.pytorch import Callback

        class _Recorder(Callback):
            def __init__(self):
                self.steps: list[dict[str, float]] = []

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
                metrics["loss"] = float(outputs["loss"])
                self.steps.append(metrics)

        return _Recorder()


def make_trainer(tmp_path, max_steps, callbacks=(), **kwargs):
    from lightning.pytorch import Trainer

    kwargs.setdefault("enable_checkpointing", False)
    return Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=list(callbacks),
        deterministic=True,
        **kwargs,
    )


def snapshot(module):
    """Every tensor of the model; the embedding and lm_head as the LLM sees them (with signal
    rows attached, their state_dict holds the frozen matrix and the rows apart)."""
    from nextgpt.llm import base_model

    state = {
        name: t.detach().clone()
        for name, t in module.model.state_dict(keep_vars=False).items()
        if ".parametrizations." not in name
    }
    inner = base_model(module.model.llm)
    state["llm.embed_tokens.weight"] = inner.get_input_embeddings().weight.detach().clone()
    state["llm.lm_head.weight"] = inner.get_output_embeddings().weight.detach().clone()
    return state


# -- losses -----------------------------------------------------------------------------------------


def test_lm_loss_is_shifted_and_masked():
    from nextgpt.training.losses import lm_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 1, -100, -100, 6]])
    expected = torch.nn.functional.cross_entropy(
        torch.stack([logits[0, 1], logits[0, 2], logits[1, 0], logits[1, 3]]), torch.tensor([3, 4, 1, 6])
    )
    assert torch.allclose(lm_loss(logits, labels), expected)
    assert lm_loss(logits, torch.full((2, 5), -100)).item() == 0.0


def test_alignment_loss_is_mean_euclidean_distance_not_mse():
    from nextgpt.conditions import Condition, ConditionPart, ConditionSpec
    from nextgpt.training.losses import alignment_loss, combine, mean_token_distance

    u = torch.zeros(2, 3, 2)
    v = torch.tensor([3.0, 4.0]).expand(2, 3, 2)
    v = v.clone()
    v[1] = 0  # half the tokens at distance 5, half at 0
    assert mean_token_distance(u, v).item() == pytest.approx(2.5)
    spec = ConditionSpec.sequence(3, 2)
    assert alignment_loss(Condition(spec, {"prompt_embeds": u}), Condition(spec, {"prompt_embeds": v})).item() == 2.5
    # several parts: each part's mean per-token distance (a pooled vector is one token), averaged
    both = ConditionSpec(
        parts=(ConditionPart(name="prompt_embeds", shape=(3, 2)), ConditionPart(name="pooled", shape=(2,)))
    )
    pooled = torch.tensor([[0.0, 1.0], [0.0, 3.0]])  # distances 1 and 3 from zero: mean 2
    prediction = Condition(both, {"prompt_embeds": u, "pooled": torch.zeros(2, 2)})
    assert alignment_loss(prediction, Condition(both, {"prompt_embeds": v, "pooled": pooled})).item() == 2.25
    terms = combine(torch.tensor(1.0), {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}, {"a": 1.0, "b": 2.0})
    assert terms.total.item() == pytest.approx(1 + 2 + 6)
    assert set(terms.as_logs()) == {"train/lm_loss", "train/align_a", "train/align_b", "train/loss"}
    with pytest.raises(ValueError):
        mean_token_distance(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="prediction is"):
        alignment_loss(prediction, Condition(spec, {"prompt_embeds": v}))


# -- data -------------------------------------------------------------------------------------------


def test_pair_records_of_the_released_formats(tmp_path, specs):
    from nextgpt.data.records import DatasetSource, read_records

    for name in ("a.png", "b.mp4", "c.wav"):
        (tmp_path / name).write_bytes(b"x")
    released = [
        {"caption": "a dog", "id": 1, "image_name": "a.png"},  # cc3m
        {"caption": "a run", "id": "v1", "video_name": "b.mp4"},  # webvid
        {"audio_id": "Y1", "audio_name": "c.wav", "caption": "a bark"},  # audiocap
    ]
    (tmp_path / "pairs.json").write_text(json.dumps(released))
    samples, bad = read_records(DatasetSource(path=str(tmp_path / "pairs.json")), specs)
    assert not bad
    assert [s.inputs[0].modality for s in samples] == ["image", "video", "audio"]
    assert samples[0].turns[0].text.startswith("<image>") and samples[0].turns[1].text == "a dog"
    generate, _ = read_records(DatasetSource(path=str(tmp_path / "pairs.json"), task="generate"), specs)
    assert generate[2].inputs == [] and generate[2].targets == {"audio": "a bark"}
    assert generate[2].turns[1].text == "a bark <audio>"


def test_bad_records_are_reported_with_file_and_index(tmp_path, specs, caplog):
    from nextgpt.data.records import DataError, DatasetSource, read_records

    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "ok.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")
    records = [
        {"caption": "fine", "image_name": "ok.png"},
        {"caption": "escapes", "image_name": "../secret.png"},
        {"caption": "", "image_name": "ok.png"},
        {"caption": "two media", "image_name": "ok.png", "audio_name": "ok.png"},
        {"caption": "missing file", "image_name": "nope.png"},
        {"caption": "wrong kind", "image_name": "ok.wav"},
        "not an object",
        {"caption": "absolute", "image_name": str(tmp_path / "secret.png")},
    ]
    path = tmp_path / "root" / "pairs.json"
    path.write_text(json.dumps(records))
    with pytest.warns(UserWarning, match=r"skipped 7 bad record\(s\) of 8"):
        samples, bad = read_records(DatasetSource(path=str(path)), specs, "skip")
    assert len(samples) == 1
    assert [b.index for b in bad] == [1, 2, 3, 4, 5, 6, 7]
    assert all(b.file == str(path) for b in bad)
    assert "escapes the dataset root" in bad[0].reason and "escapes" in bad[6].reason
    assert "caption" in bad[1].reason
    assert f"{path}: record 1" in caplog.text
    with pytest.raises(DataError, match=rf"{path}: record 1: .*escapes the dataset root"):
        read_records(DatasetSource(path=str(path)), specs, "error")

    dialogues = [
        {"conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "hi"}]},
        {"conversations": [{"from": "human", "value": "<image> what?"}, {"from": "gpt", "value": "x"}]},
    ]
    (tmp_path / "root" / "dialogues.json").write_text(json.dumps(dialogues))
    with pytest.warns(UserWarning, match="skipped 2"):
        _, bad = read_records(
            DatasetSource(path=str(tmp_path / "root" / "dialogues.json"), format="instruction"), specs
        )
    assert [b.index for b in bad] == [0, 1]
    assert "human" in bad[0].reason and "has no listed image file" in bad[1].reason


def test_instruction_and_mosit_records(data, specs):
    from nextgpt.data import DatasetSource, NextGPTDataset

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no bad record in the synthetic set
        instruction = NextGPTDataset([DatasetSource(path=str(data["instruction"]), format="instruction")], specs)
        mosit = NextGPTDataset([DatasetSource(path=str(data["mosit"]), format="mosit")], specs)
    assert len(instruction) == len(mosit) == 6
    for dataset in (instruction, mosit):
        modalities = set()
        for sample in (dataset[i] for i in range(len(dataset))):
            ((modality, _item),) = sample.media
            modalities.add(modality)
            placeholder = specs[modality].signal_tokens.placeholder
            assert placeholder in sample.turns[0].text
            assert sample.turns[-1].text.endswith(placeholder)  # the output, as a placeholder
            assert sample.targets[modality]
        assert modalities == set(specs)
    assert mosit[0].turns[0].text.startswith("Look at <")


def test_pad_packed_right_pads_with_ignored_labels():
    from nextgpt.data.collate import pad_packed
    from nextgpt.model import PackedInput

    a = PackedInput(torch.ones(3, 4), torch.tensor([5, 6, 7]), torch.tensor([-100, 6, 7]))
    b = PackedInput(torch.ones(1, 4) * 2, torch.tensor([9]), torch.tensor([9]))
    batch = pad_packed([a, b], pad_id=0)
    assert batch.embeds.shape == (2, 3, 4) and batch.embeds[1, 1:].abs().sum() == 0
    assert batch.input_ids.tolist() == [[5, 6, 7], [9, 0, 0]]
    assert batch.labels.tolist() == [[-100, 6, 7], [9, -100, -100]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert pad_packed([a, b], 0, max_length=2).input_ids.shape == (2, 2)


def test_resumable_loader_skips_consumed_batches_also_inside_a_ddp_wrapper():
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
    from nextgpt.data.dataset import EpochSeededSampler, ResumableDataLoader

    def loader(rank):
        sampler = DistributedSamplerWrapper(EpochSeededSampler(12, 13), num_replicas=2, rank=rank, shuffle=False)
        return ResumableDataLoader(list(range(12)), sampler=sampler, batch_size=2, collate_fn=list)

    seen = []
    for rank in (0, 1):
        full = loader(rank)
        full.set_epoch(0)
        first = list(full)
        full.set_epoch(1)  # reaches our sampler through the wrapper: a new order
        second = list(full)
        assert first != second and len(second) == 3
        resumed = loader(rank)
        resumed.load_state_dict({"epoch": 1, "batches": 1})
        assert list(resumed) == second[1:] and resumed.consumed == 1
        seen += [i for batch in second for i in batch]
    assert sorted(seen) == list(range(12))  # the ranks share the epoch without overlap
    at_end = loader(0)
    at_end.load_state_dict({"epoch": 0, "batches": 3})  # saved at the end of epoch 0
    assert len(list(at_end)) == 3 and at_end._base_sampler().epoch == 1


# -- the LightningModule --------------------------------------------------------------------------


def test_mixed_modality_batch(data):
    from nextgpt.data import DatasetSource, NextGPTDataset, collate_samples

    module = make_module(3)
    dataset = NextGPTDataset([DatasetSource(path=str(data["instruction"]), format="instruction")], module.model.specs)
    batch = collate_samples([dataset[i] for i in range(3)])
    assert {m for s in batch.samples for m, _ in s.media} == {"image", "audio", "video"}
    padded = module.prepare(batch)
    assert padded.embeds.shape[0] == 3
    for row, sample in enumerate(batch.samples):  # each row holds its own modality's signal run
        ((modality, _),) = sample.media
        run = torch.tensor(module.model.signal_ids[modality])
        ids = padded.input_ids[row]
        assert any(torch.equal(ids[i : i + len(run)], run) for i in range(len(ids) - len(run) + 1))
    terms = module.compute_losses(batch)
    assert set(terms.align) == {"image", "audio", "video"}
    assert terms.weights["video"] == 2.0 and terms.weights["image"] == 1.0
    assert torch.isfinite(terms.total)
    terms.total.backward()
    for name in ("image", "audio", "video"):
        assert module.model.input_projectors[name].proj.weight.grad is not None


STAGES = [
    (1, {}, "pairs", "caption"),
    (2, {}, "pairs", "generate"),
    (3, {}, "instruction", "caption"),
    (2, {"train_signal_rows": False, "train_lora": True}, "pairs", "generate"),
]


@pytest.mark.parametrize(
    ("stage", "overrides", "fmt", "task"), STAGES, ids=["stage1", "stage2", "stage3", "stage2-overridden"]
)
def test_stage_trains_only_its_parameters_and_loss_falls(tmp_path, data, stage, overrides, fmt, task):
    module = make_module(stage, **overrides)
    model = module.model
    before = snapshot(module)
    recorder = LossRecorder()
    make_trainer(tmp_path, 6, [recorder]).fit(module, make_data(data[fmt], fmt, task))

    groups = module.trainable_groups
    after = snapshot(module)
    expect_changed = set()
    if groups["input_projectors"]:
        expect_changed |= {k for k in after if k.startswith("input_projectors.")}
    if groups["output_projectors"]:
        expect_changed |= {k for k in after if k.startswith("output_projectors.")}
    if groups["lora"]:
        expect_changed |= {k for k in after if "lora_" in k}
    assert expect_changed
    embedding_keys = {k for k in after if k.endswith(("embed_tokens.weight", "lm_head.weight"))}
    for key, value in after.items():
        if key in embedding_keys:
            continue
        if key in expect_changed:
            assert not torch.equal(value, before[key]), f"{key} did not train in stage {stage}"
        else:
            assert torch.equal(value, before[key]), f"{key} changed in stage {stage}"
    rows = torch.tensor(model.new_token_ids)
    other = torch.ones(model.base_vocab_size + len(rows), dtype=torch.bool)
    other[rows] = False
    for key in embedding_keys:
        assert torch.equal(after[key][other], before[key][other]), f"{key}: a non-signal row changed"
        assert torch.equal(after[key][rows], before[key][rows]) != groups["signal_rows"], key

    losses = [s["loss"] for s in recorder.steps]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    if groups["output_projectors"] or groups["lora"]:
        assert losses[-1] < losses[0] * 0.9, losses
    else:
        # only the media token's embedding trains: a random tiny LLM barely listens to it
        assert losses[-1] < losses[0] - 0.005 and losses[-1] <= min(losses[:-1]), losses
    if stage >= 2:
        assert {"train/align_image", "train/align_audio", "train/align_video", "train/lm_loss"} <= set(
            recorder.steps[-1]
        )


def test_mixed_precision_gradient_checkpointing_and_validation(tmp_path, data):
    from nextgpt.training.datamodule import NextGPTDataModule

    module = make_module(3, gradient_checkpointing=True)
    datamodule = NextGPTDataModule(
        [{"path": str(data["instruction"]), "format": "instruction"}],
        val=[{"path": str(data["mosit"]), "format": "mosit"}],
        batch_size=3,
        plugins=PLUGINS,
    )
    recorder = LossRecorder()
    trainer = make_trainer(tmp_path, 2, [recorder], precision="bf16-mixed", val_check_interval=2, limit_val_batches=1)
    trainer.fit(module, datamodule)
    assert len(recorder.steps) == 2 and all(math.isfinite(s["loss"]) for s in recorder.steps)
    assert {"val/lm_loss", "val/loss", "val/align_image"} <= set(trainer.callback_metrics)


# -- checkpoints, resume, export ----------------------------------------------------------------------


def fit_with_checkpoints(tmp_path, data, steps, ckpt_path=None, stage=3):
    from lightning.pytorch.callbacks import ModelCheckpoint

    module = make_module(stage, lr=1e-2, warmup_steps=2, schedule="linear")
    recorder = LossRecorder()
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", every_n_train_steps=1, save_top_k=-1)
    trainer = make_trainer(tmp_path, steps, [recorder, saver], enable_checkpointing=True, gradient_clip_val=1.0)
    # 6 samples in batches of 2: 3 steps an epoch, so the run crosses an epoch boundary
    fmt, task = ("instruction", "caption") if stage == 3 else ("pairs", "generate")
    trainer.fit(module, make_data(data[fmt], fmt, task, batch_size=2, shuffle=True), ckpt_path=ckpt_path)
    return module, [s["loss"] for s in recorder.steps]


def tensor_count(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return 1
    if isinstance(obj, dict):
        return sum(tensor_count(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_count(v) for v in obj)
    return 0


def tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def test_checkpoints_hold_trainable_state_and_resume_reproduces_the_run(tmp_path, data):
    from nextgpt.errors import ConfigError
    from nextgpt.model import NextGPTModel
    from nextgpt.training.export import export_checkpoint

    module, losses = fit_with_checkpoints(tmp_path / "full", data, 4)
    assert len(losses) == 4
    for resume_step in (2, 3):  # mid-epoch, and at the end of the first epoch
        ckpt = tmp_path / "full" / "ckpt" / f"step={resume_step}.ckpt"
        _, resumed = fit_with_checkpoints(tmp_path / f"resumed{resume_step}", data, 4, ckpt_path=str(ckpt))
        assert resumed == losses[resume_step:], (resume_step, losses, resumed)

    ckpt = tmp_path / "full" / "ckpt" / "step=4.ckpt"
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    trainable = module.model.trainable_state_dict()
    assert set(checkpoint["state_dict"]) == set(trainable)
    for key, value in trainable.items():
        assert torch.equal(checkpoint["state_dict"][key], value), key
    expected = tensor_bytes(checkpoint["state_dict"]) + tensor_bytes(checkpoint["optimizer_states"])
    size = ckpt.stat().st_size
    # torch.save stores each tensor as an aligned zip entry: a few hundred bytes each on top
    overhead = 512 * tensor_count([checkpoint["state_dict"], checkpoint["optimizer_states"]]) + 64 * 1024
    assert expected <= size <= expected + overhead, (size, expected, overhead)
    frozen = sum(p.numel() * p.element_size() for p in module.model.parameters() if not p.requires_grad)
    assert tensor_bytes(checkpoint["state_dict"]) < frozen

    state = dict(checkpoint["state_dict"])
    key = next(iter(state))
    with pytest.raises(ConfigError, match="missing keys"):
        module.load_state_dict({k: v for k, v in state.items() if k != key})
    with pytest.raises(ConfigError, match="unused keys.*stray"):
        module.load_state_dict({**state, "stray": torch.zeros(1)})

    folder = export_checkpoint(ckpt, tmp_path / "export")
    loaded = NextGPTModel.from_pretrained(folder, registry=module.model.registry)
    for key, value in loaded.trainable_state_dict().items():
        assert torch.equal(value, trainable[key]), key


# -- configs and the command line ---------------------------------------------------------------------

CONFIG_ROOT = Path(__file__).parents[1] / "examples" / "configs"
CONFIGS = sorted(c for c in CONFIG_ROOT.glob("**/*.yaml") if "strategies" not in c.parts)  # overlays: test_strategies


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(CONFIG_ROOT)) for c in CONFIGS])
def test_example_configs_parse(config):
    from nextgpt.training.cli import parse_config

    parsed = parse_config(str(config))
    assert parsed.model.stage in (1, 2, 3)
    assert parsed.trainer.gradient_clip_val == 1.0
    if not config.name.startswith("tiny_"):  # the published 7B setup
        assert parsed.model.lr == {1: 4e-4, 2: 4e-4, 3: 5e-4}[parsed.model.stage]
        assert tuple(parsed.model.betas) == (0.9, 0.95) and parsed.model.weight_decay == 1e-3
        assert parsed.trainer.precision in ("bf16-mixed", "16-mixed")
        assert parsed.trainer.strategy and parsed.data.batch_size * parsed.trainer.accumulate_grad_batches == 2
        assert parsed.model.cache_dir and parsed.model.gradient_checkpointing  # no frozen encoder per step


def test_config_typo_is_an_error(tmp_path):
    from nextgpt.training.cli import parse_config

    config = tmp_path / "bad.yaml"
    config.write_text(CONFIGS[0].read_text().replace("  stage:", "  stagee:"))
    with pytest.raises(SystemExit):
        parse_config(str(config))


def build_cli():
    import argparse

    from nextgpt.cli import export_cmd, fit_cmd

    parser = argparse.ArgumentParser(prog="nextgpt")
    sub = parser.add_subparsers(dest="command")
    handlers = {"fit": fit_cmd.add(sub.add_parser("fit")), "export": export_cmd.add(sub.add_parser("export"))}
    return parser, handlers


def test_fit_and_export_commands_run_a_tiny_config(tmp_path, monkeypatch, registry):
    from nextgpt.data.synthetic import main as write_data
    from nextgpt.model import NextGPTModel

    monkeypatch.setenv("NEXTGPT_PLUGINS", ",".join(PLUGINS))
    monkeypatch.chdir(tmp_path)
    assert write_data(["outputs/tiny_data", "1"]) == 0
    config = Path(__file__).parents[1] / "examples" / "configs" / "tiny_stage2.yaml"
    parser, handlers = build_cli()
    args = parser.parse_args(
        ["fit", "--config", str(config), "--trainer.max_steps=2", "--trainer.enable_progress_bar=false"]
    )
    assert handlers["fit"](args) == 0
    last = tmp_path / "outputs" / "tiny_stage2" / "checkpoints" / "last.ckpt"
    assert last.exists()
    metrics = (tmp_path / "outputs" / "tiny_stage2" / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/lm_loss" in metrics and "train/align_video" in metrics and "train/loss" in metrics
    # resume from the last checkpoint and go on to step 3
    args = parser.parse_args(
        [
            "fit",
            "--config",
            str(config),
            "--trainer.max_steps=3",
            "--trainer.enable_progress_bar=false",
            "--ckpt_path",
            "last",
        ]
    )
    assert handlers["fit"](args) == 0
    assert torch.load(last, weights_only=True)["global_step"] == 3
    args = parser.parse_args(["export", str(last), "exported"])
    assert handlers["export"](args) == 0
    model = NextGPTModel.from_pretrained(tmp_path / "exported", registry=registry)
    assert set(model.signal_ids) == set(PLUGINS)


@pytest.mark.slow
def test_two_process_ddp_on_cpu_completes_a_tiny_stage(tmp_path):
    import os
    import subprocess
    import sys

    from nextgpt.data.synthetic import write_synthetic_dataset
    from nextgpt.plugins import load_plugins

    registry = load_plugins(allow=PLUGINS)
    write_synthetic_dataset(
        tmp_path / "outputs" / "tiny_data", {n: registry.modality(n) for n in PLUGINS}, per_modality=2
    )
    config = Path(__file__).parents[1] / "examples" / "configs" / "tiny_stage1.yaml"
    env = {**os.environ, "NEXTGPT_PLUGINS": ",".join(PLUGINS), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "nextgpt.cli.fit_cmd",
        "--config",
        str(config),
        "--trainer.strategy=ddp_find_unused_parameters_true",
        "--trainer.devices=2",
        "--trainer.max_steps=2",
        "--trainer.enable_progress_bar=false",
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stdout + result.stderr
    assert "All distributed processes registered" in result.stdout + result.stderr
    checkpoint = torch.load(tmp_path / "outputs" / "tiny_stage1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2
    trainable = (
        "input_projectors.",
        "output_projectors.",
        "llm.lora.",
        "llm.embed_tokens.signal_rows",
        "llm.lm_head.signal_rows",
    )
    assert checkpoint["state_dict"] and all(k.startswith(trainable) for k in checkpoint["state_dict"])


# -- caches ---------------------------------------------------------------------------------------------


def test_tensor_cache_is_keyed_by_content_and_identity(tmp_path):
    from nextgpt.training.cache import TensorCache, text_key

    cache = TensorCache(tmp_path, "targets", "image", "decoder A", shard_size=2)
    cache.put(text_key("a"), torch.ones(2, 3))
    assert text_key("a") in cache and not list(cache.directory.glob("*.safetensors"))  # buffered
    cache.put(text_key("b"), torch.zeros(2, 3))  # a full shard is written
    assert len(list(cache.directory.glob("*.safetensors"))) == 1
    cache.put(text_key("c"), torch.full((2, 3), 2.0))
    cache.flush()

    again = TensorCache(tmp_path, "targets", "image", "decoder A")
    assert len(again) == 3 and again.get(text_key("c")).dtype == torch.float16
    assert torch.equal(again.get(text_key("a")), torch.ones(2, 3, dtype=torch.float16))
    assert again.get(text_key("missing")) is None

    other = TensorCache(tmp_path, "targets", "image", "decoder B")  # another decoder: another folder
    assert len(other) == 0 and other.directory != again.directory
    # a shard of another component dropped into the folder is refused, never read
    stray = next(cache.directory.glob("*.safetensors"))
    (other.directory).mkdir(parents=True)
    (other.directory / stray.name).write_bytes(stray.read_bytes())
    with pytest.warns(UserWarning, match="belongs to another component"):
        other.refresh()
    assert len(other) == 0


def test_cache_command_then_training_reads_features_and_targets_from_disk(tmp_path, monkeypatch, data):
    from nextgpt.cli import cache_cmd
    from nextgpt.data import DatasetSource, NextGPTDataset, collate_samples

    monkeypatch.setenv("NEXTGPT_PLUGINS", ",".join(PLUGINS))
    config = tmp_path / "stage3.yaml"
    text = (Path(__file__).parents[1] / "examples" / "configs" / "tiny_stage3.yaml").read_text()
    config.write_text(
        text.replace("outputs/tiny_data/instruction.json", str(data["instruction"])).replace(
            "outputs/tiny_data/mosit.json", str(data["mosit"])
        )
    )
    parser = __import__("argparse").ArgumentParser()
    handler = cache_cmd.add(parser)
    assert handler(parser.parse_args(["--config", str(config), "--cache-dir", str(tmp_path / "cache")])) == 0
    shards = list((tmp_path / "cache").rglob("*.safetensors"))
    assert {p.relative_to(tmp_path / "cache").parts[:2] for p in shards} == {
        (kind, m) for kind in ("features", "targets") for m in PLUGINS
    }

    # a fresh module reads everything from the cache: the frozen encoders and decoders never run
    module = make_module(3, cache_dir=str(tmp_path / "cache"))
    plain = make_module(3)
    for name in PLUGINS:
        monkeypatch.setattr(module.model.encoders[name], "forward", lambda *a, **k: pytest.fail("encoder ran"))
        monkeypatch.setattr(
            module.model.decoders[name], "condition_from_text", lambda *a, **k: pytest.fail("decoder ran")
        )
    dataset = NextGPTDataset(
        [DatasetSource(path=str(data["instruction"]), format="instruction")],
        module.model.specs,
        load_media=False,
        content_keys=True,
    )
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    assert all(item is None for s in batch.samples for _, item in s.media)
    cached = module.compute_losses(batch)
    loaded = NextGPTDataset([DatasetSource(path=str(data["instruction"]), format="instruction")], plain.model.specs)
    fresh = plain.compute_losses(collate_samples([loaded[i] for i in range(len(loaded))]))
    assert set(cached.align) == set(fresh.align) == set(PLUGINS)
    # the cache stores float16: the losses agree to that precision
    assert cached.lm.item() == pytest.approx(fresh.lm.item(), rel=1e-3)
    for name in PLUGINS:
        assert cached.align[name].item() == pytest.approx(fresh.align[name].item(), rel=1e-2)
    assert module.caches.features["image"].hits > 0 and module.caches.targets["video"].tensors.hits > 0
    # and a whole fit: the data module hands out keys and paths only, nothing is re-encoded
    recorder = LossRecorder()
    make_trainer(tmp_path, 2, [recorder]).fit(module, make_data(data["instruction"], "instruction", cache_media=True))
    assert len(recorder.steps) == 2 and all(math.isfinite(s["loss"]) for s in recorder.steps)


def test_stage2_trains_signal_rows_without_vocabulary_sized_optimizer_state(tmp_path, data):
    """train_embeddings="new_rows": the signal rows are their own parameters, so neither the
    running optimizer nor a checkpoint holds anything the size of the vocabulary, and a resumed
    run reproduces the losses."""
    from nextgpt.llm import base_model, signal_row_parameters

    module, losses = fit_with_checkpoints(tmp_path / "full", data, 3, stage=2)
    model = module.model
    rows = signal_row_parameters(base_model(model.llm))
    assert len(rows) == 2 and all(r.shape == (len(model.new_token_ids), model.d_llm) for r in rows)
    optimizer = module.optimizers(use_pl_optimizer=False)
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    assert all(any(p is r for p in trained) for r in rows)
    vocab = len(model.tokenizer)
    for state in [
        *optimizer.state.values(),
        *torch.load(tmp_path / "full" / "ckpt" / "step=2.ckpt", map_location="cpu", weights_only=True)[
            "optimizer_states"
        ][0]["state"].values(),
    ]:
        assert all(v.shape[:1] != (vocab,) for v in state.values() if torch.is_tensor(v) and v.ndim == 2)
    assert not any(
        p.requires_grad
        for p in base_model(model.llm).get_input_embeddings().parametrizations.weight.original.unsqueeze(0)
    )
    ckpt = tmp_path / "full" / "ckpt" / "step=2.ckpt"
    _, resumed = fit_with_checkpoints(tmp_path / "resumed", data, 3, ckpt_path=str(ckpt), stage=2)
    assert resumed == losses[2:], (losses, resumed)
    # the trained rows go back into the matrices when the stage's settings change
    trained_rows = model.trainable_state_dict()["llm.embed_tokens.signal_rows"]
    model.set_trainable(input_projectors=True, output_projectors=False, signal_rows=False, lora=False)
    assert signal_row_parameters(base_model(model.llm)) == []
    weight = base_model(model.llm).get_input_embeddings().weight
    assert isinstance(weight, torch.nn.Parameter) and not weight.requires_grad
    assert torch.equal(weight.detach()[model.new_token_ids], trained_rows)


def test_state_dict_is_trainable_only_also_inside_a_wrapper():
    module = make_module(1)
    state = module.state_dict()
    assert set(state) == set(module.model.trainable_state_dict())
    wrapper = torch.nn.Module()
    wrapper.inner = module  # as Lightning's strategy wrappers hold it
    wrapped = wrapper.state_dict()
    assert {k for k in wrapped if k.startswith("inner.")} == {f"inner.{k}" for k in state}


# -- the optional diffusion loss ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_noise_prediction_target_follows_the_scheduler(kind):
    from diffusers import DDPMScheduler
    from nextgpt.training.diffusion import min_snr_weights, noise_prediction_loss, snr

    scheduler = DDPMScheduler(num_train_timesteps=50, prediction_type=kind)
    latents = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    ab = scheduler.alphas_cumprod

    def oracle(predicts):
        def denoise(noisy, t):
            a = ab[t].view(-1, 1, 1, 1).sqrt()
            s = (1 - ab[t]).view(-1, 1, 1, 1).sqrt()
            noise = (noisy - a * latents) / s
            return {"epsilon": noise, "v_prediction": a * noise - s * latents, "sample": latents}[predicts]

        return denoise

    for predicts in ("epsilon", "v_prediction", "sample"):
        loss = noise_prediction_loss(oracle(predicts), scheduler, latents, generator=torch.Generator().manual_seed(0))
        assert (loss.item() < 1e-8) == (predicts == kind), (kind, predicts, loss.item())
    t = torch.tensor([0, 25, 49])
    weights = min_snr_weights(scheduler, t, 5.0)
    ratio = snr(scheduler, t)
    expected = {
        "epsilon": ratio.clamp(max=5) / ratio,
        "v_prediction": ratio.clamp(max=5) / (ratio + 1),
        "sample": ratio.clamp(max=5),
    }[kind]
    assert torch.allclose(weights, expected)
    weighted = noise_prediction_loss(
        lambda x, t: torch.zeros_like(x),
        scheduler,
        latents,
        min_snr_gamma=5.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert math.isfinite(weighted.item())


def test_diffusion_loss_trains_the_output_projectors(tmp_path, data):
    from nextgpt.errors import ConfigError

    module = make_module(2, align_loss=False, train_signal_rows=False, diffusion_loss_weight=1.0, min_snr_gamma=5.0)
    module.check_diffusion_support()  # every in-repo decoder offers one (audio: through its mel front end)
    audio = module.model.decoders["audio"]
    audio.supports_denoising_loss = False  # as a decoder without the loss declares
    with pytest.raises(ConfigError, match=r"offer no denoising_loss.*audio \(audioldm\)"):
        module.check_diffusion_support()
    del audio.supports_denoising_loss  # the decoder's own again
    before = snapshot(module)
    recorder = LossRecorder()
    make_trainer(tmp_path, 2, [recorder]).fit(module, make_data(data["pairs"], task="generate", load_outputs=True))
    step = recorder.steps[-1]
    assert {"train/diffusion_image", "train/diffusion_audio", "train/diffusion_video"} <= set(step)
    assert all(math.isfinite(step[f"train/diffusion_{m}"]) for m in PLUGINS)
    assert not any(k.startswith("train/align_") for k in step)
    after = snapshot(module)
    for name in PLUGINS:  # only the noise-prediction loss reaches the output projectors here
        key = f"output_projectors.{name}.fc.weight"
        assert not torch.equal(before[key], after[key]), key


def test_records_of_a_modality_the_model_does_not_enable_are_bad_records(tmp_path, data):
    from lightning.pytorch import Trainer
    from nextgpt.training.module import NextGPTLightningModule

    module = NextGPTLightningModule("tiny", stage=1, plugins=PLUGINS, modalities=["image", "video"])
    datamodule = make_data(data["pairs"])
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    datamodule.trainer = trainer
    trainer.datamodule = datamodule
    with pytest.warns(UserWarning, match=r"skipped 2 bad record\(s\) of 6"):
        datamodule.setup("fit")
    assert {s.inputs[0].modality for s in datamodule.train_set.records} == {"image", "video"}
    assert all("audio" in b.reason for b in datamodule.train_set.bad_records)


@pytest.mark.parametrize("tied", [False, True])
def test_signal_rows_train_alone_and_go_back_into_the_matrices(tied):
    """`attach_signal_rows` on a plain LLaMA (tied or untied embedding and lm_head): only the
    rows get gradients, the logits see them, and `detach_signal_rows` writes them back."""
    from nextgpt.llm import attach_signal_rows, detach_signal_rows, signal_row_parameters
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=20,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        tie_word_embeddings=tied,
    )
    llm = LlamaForCausalLM(config).requires_grad_(False)
    before = llm.get_input_embeddings().weight.detach().clone()
    rows = attach_signal_rows(llm, [17, 18, 19])
    assert len(rows) == (1 if tied else 2) and signal_row_parameters(llm) == rows
    with torch.no_grad():
        for r in rows:
            r += 1.0
    ids = torch.tensor([[1, 17, 2, 19]])
    llm(input_ids=ids).logits[0, -1, 18].backward()
    assert all(r.grad is not None and r.grad.abs().sum() > 0 for r in rows)
    assert not any(p.requires_grad for name, p in llm.named_parameters() if not name.endswith(".rows"))
    detach_signal_rows(llm)
    assert signal_row_parameters(llm) == []
    after = llm.get_input_embeddings().weight
    assert torch.equal(after[:17], before[:17]) and torch.equal(after[17:], before[17:] + 1.0)
    assert (llm.get_output_embeddings().weight is after) == tied
