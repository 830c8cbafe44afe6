"""`nextgpt eval` and its metrics: captioning metrics on known inputs, plugin media metrics with a
tiny local CLIP and a tiny FID feature extractor, clear errors for missing weights, and the
command end to end on a tiny data set in the released pair formats with the tiny preset."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from nextgpt.errors import ConfigError
from nextgpt.evaluation.captioning import bleu4, caption_scores, cider, rouge_l, tokenize
from PIL import Image

CAPTIONS = [
    "a red circle at the top left",
    "a blue square moving right",
    "a high beep then a low beep",
]


# -- captioning metrics ----------------------------------------------------------------------------


def test_identical_captions_score_perfectly():
    scores = caption_scores(CAPTIONS, [[c] for c in CAPTIONS])
    assert scores["bleu4"] == pytest.approx(1.0)
    assert scores["rouge_l"] == pytest.approx(1.0)
    assert scores["cider"] > 5.0  # CIDEr-D of exact matches over distinct items is 10


def test_disjoint_captions_score_zero():
    references = [["zebra giraffe elephant lion"], ["xylophone drum"], ["quartz granite basalt"]]
    scores = caption_scores(CAPTIONS, references)
    assert scores["bleu4"] == pytest.approx(0.0, abs=1e-6)
    assert scores["rouge_l"] == pytest.approx(0.0, abs=1e-6)
    assert scores["cider"] == pytest.approx(0.0, abs=1e-6)


def test_tokenization_ignores_case_and_punctuation_and_takes_the_best_reference():
    assert tokenize("A Red-Circle, at the TOP left!") == [
        "a",
        "red",
        "circle",
        "at",
        "the",
        "top",
        "left",
    ]
    predictions = ["A red circle, at the TOP left!", "a blue square moving right"]
    references = [
        ["something else entirely", "a red circle at the top left"],
        ["a blue square moving right"],
    ]
    assert bleu4(predictions, references) == pytest.approx(1.0)
    assert rouge_l(predictions, references) == pytest.approx(1.0)
    partial = rouge_l(["a red circle"], [["a red circle at the top left"]])
    assert 0.0 < partial < 1.0
    assert cider(["x"], [["x"]]) == 0.0  # one item: every n-gram has zero document-frequency weight


def test_caption_metrics_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        bleu4(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="references\\[0\\] is empty"):
        rouge_l(["a"], [[]])


# -- plugin metrics --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    from nextgpt.evaluation.clip import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def _metric(registry, modality: str, name: str):
    return {m.name: m for m in registry.metrics_for(modality)}[name]


def test_plugins_register_their_metrics(registry):
    assert {m.name for m in registry.metrics_for("image")} == {"fid", "clip_score"}
    assert {m.name for m in registry.metrics_for("video")} == {"clipsim"}
    fid = _metric(registry, "image", "fid")
    assert fid.needs_references and not fid.higher_is_better


def test_clip_score_with_a_tiny_local_clip(registry, tiny_clip):
    from nextgpt_image.examples import example_image

    metric = _metric(registry, "image", "clip_score").build(clip_model=str(tiny_clip))
    images = [example_image(), example_image(48).transpose(Image.FLIP_LEFT_RIGHT)]
    metric.update(images, [], CAPTIONS[:2])
    score = metric.compute()
    assert math.isfinite(score) and 0.0 <= score <= 100.0


def test_video_clipsim_with_a_tiny_local_clip(registry, tiny_clip):
    from nextgpt_video.examples import example_video

    metric = _metric(registry, "video", "clipsim").build(clip_model=str(tiny_clip), clip_frames=3)
    metric.update([example_video(), example_video(frames=4)], [], CAPTIONS[1:])
    score = metric.compute()
    assert math.isfinite(score) and 0.0 <= score <= 1.0
    assert len(metric.per_video) == 2


@pytest.mark.parametrize(
    ("modality", "name", "options", "expected"),
    [
        ("image", "clip_score", {}, "clip_model"),
        ("image", "clip_score", {"clip_model": "/nonexistent/clip"}, "is not a folder"),
        ("video", "clipsim", {}, "clip_model"),
        ("image", "fid", {}, "inception_weights"),
        ("image", "fid", {"inception_weights": "/nonexistent/inception.pth"}, "is not a file"),
    ],
)
def test_missing_weights_are_clear_errors(registry, modality, name, options, expected):
    with pytest.raises(ConfigError) as info:
        _metric(registry, modality, name).build(**options)
    message = str(info.value)
    assert expected in message and "downloads nothing" in message and name in message


def test_corrupt_inception_weights_are_a_clear_error(registry, tmp_path):
    bogus = tmp_path / "pt_inception.pth"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="inception_weights=.*not a loadable"):
        _metric(registry, "image", "fid").build(inception_weights=str(bogus))


class TinyFeature(torch.nn.Module):
    """A fixed random projection of 4x4-pooled pixels: an 8-d stand-in for Inception."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d(4)
        self.proj = torch.nn.Linear(48, 8)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            torch.nn.init.normal_(self.proj.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x.float()).flatten(1))


def _random_images(seed: int, count: int, shift: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(np.clip(rng.integers(0, 200, (32, 32, 3)) + shift, 0, 255).astype(np.uint8))
        for _ in range(count)
    ]


def test_fid_with_a_tiny_feature_extractor(registry):
    backend = _metric(registry, "image", "fid")
    images = _random_images(1, 24)
    same = backend.build(fid_feature=TinyFeature(), fid_size=32)
    same.update(images, images, [])
    assert abs(same.compute()) < 1e-3
    other = backend.build(fid_feature=TinyFeature(), fid_size=32)
    other.update(images, _random_images(2, 24, shift=55), [])
    assert other.compute() > 1.0
    few = backend.build(fid_feature=TinyFeature(), fid_size=32)
    few.update(images[:1], images, [])
    with pytest.raises(ConfigError, match="at least 2"):
        few.compute()


# -- nextgpt eval end to end ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, registry) -> Path:
    """A media root with each plugin's example (twice, so CIDEr has several items) and pair
    files in the released formats: cc3m (image), webvid (video), audiocap (audio)."""
    root = tmp_path_factory.mktemp("eval-data")
    for name in ("image", "video", "audio"):
        spec = registry.modality(name)
        for index in range(2):
            spec.save(spec.example(), root / f"{name}{index}{spec.output_extension}")
    (root / "cc3m.json").write_text(
        json.dumps(
            [
                {"caption": "a red circle at the top left", "id": "0", "image_name": "image0.png"},
                {
                    "caption": "a red disc in the top left corner",
                    "id": "0",
                    "image_name": "image0.png",
                },
                {"caption": "a red circle", "id": "1", "image_name": "image1.png"},
            ]
        )
    )
    (root / "webvid.json").write_text(
        json.dumps(
            [
                {"caption": "a blue square moving right", "id": "0", "video_name": "video0.mp4"},
                {"caption": "a square slides to the right", "id": "1", "video_name": "video1.mp4"},
            ]
        )
    )
    (root / "audiocap.json").write_text(
        json.dumps(
            [
                {"audio_id": 0, "audio_name": "audio0.wav", "caption": "a beep"},
                {"audio_id": 1, "audio_name": "audio1.wav", "caption": "a high tone"},
            ]
        )
    )
    return root


def run_eval(*argv: str) -> int:
    """`nextgpt eval ARGS` in process, through the sub-command's own parser and runner."""
    from nextgpt.cli import eval_cmd

    parser = argparse.ArgumentParser(prog="nextgpt eval")
    run = eval_cmd.add(parser)
    return run(parser.parse_args(list(argv)))


def _assert_finite_metrics(data: dict, names: set[str]) -> None:
    assert set(data["metrics"]) == names
    for name in names:
        assert isinstance(data["metrics"][name], float) and math.isfinite(data["metrics"][name]), name


def test_eval_caption_end_to_end(dataset, tmp_path, capsys):
    out_json = tmp_path / "caption.json"
    code = run_eval(
        "--model",
        "tiny",
        "--task",
        "caption",
        "--modality",
        "image",
        "--data",
        str(dataset / "cc3m.json"),
        "--max-new-tokens",
        "6",
        "--json",
        str(out_json),
        "--quiet",
    )
    assert code == 0
    table = capsys.readouterr().out
    for name in ("bleu4", "rouge_l", "cider"):
        assert name in table
    data = json.loads(out_json.read_text())
    assert data["task"] == "caption" and data["modality"] == "image" and data["n_items"] == 2
    _assert_finite_metrics(data, {"bleu4", "rouge_l", "cider"})
    assert data["skipped"] == {}
    first = data["items"][0]
    assert first["media"] == "image0.png" and len(first["references"]) == 2  # grouped by media file
    assert isinstance(first["prediction"], str)


def test_eval_caption_reads_audiocap_format(dataset, tiny_model):
    from nextgpt.evaluation import evaluate_captioning

    report = evaluate_captioning(tiny_model, dataset / "audiocap.json", "audio", max_new_tokens=4, progress=False)
    assert report.n_items == 2 and [i["references"] for i in report.items] == [
        ["a beep"],
        ["a high tone"],
    ]
    assert all(math.isfinite(v) for v in report.values().values())


def test_eval_generate_end_to_end(dataset, tiny_clip, tmp_path, capsys):
    out_json = tmp_path / "generate.json"
    code = run_eval(
        "--model",
        "tiny",
        "--task",
        "generate",
        "--modality",
        "image",
        "--data",
        str(dataset / "cc3m.json"),
        "--root",
        str(dataset),
        "--out",
        str(tmp_path / "generated"),
        "--metric-option",
        f"clip_model={tiny_clip}",
        "--decode-option",
        "steps=2",
        "--decode-option",
        "eta=0.5",  # not a DecodeOptions field: goes to extra, then to the pipeline call
        "--max-new-tokens",
        "4",
        "--json",
        str(out_json),
        "--quiet",
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "clip_score" in captured.out and "fid" in captured.out
    # FID's Inception weights were not given: skipped with a note naming the option, not silently
    assert "skipping metric 'fid'" in captured.err and "inception_weights" in captured.err
    data = json.loads(out_json.read_text())
    assert data["task"] == "generate" and data["n_items"] == 3
    assert data["metrics"]["fid"] is None and "inception_weights" in data["skipped"]["fid"]
    clip = data["metrics"]["clip_score"]
    assert isinstance(clip, float) and math.isfinite(clip)
    generated = [Path(item["generated"]) for item in data["items"]]
    assert len(generated) == 3 and all(p.is_file() and p.suffix == ".png" for p in generated)


def test_eval_decode_option_the_decoder_does_not_take_is_an_error(dataset, tmp_path):
    from nextgpt.errors import ConfigError

    args = ["--model", "tiny", "--task", "generate", "--modality", "image", "--data", str(dataset / "cc3m.json")]
    args += ["--out", str(tmp_path / "generated"), "--decode-option", "etaa=1", "--quiet"]
    with pytest.raises(ConfigError, match=r"decode option extra.etaa: StableDiffusionPipeline takes no argument"):
        run_eval(*args)


def test_evaluate_generation_with_fid_and_video(dataset, tiny_model, tiny_clip, tmp_path):
    from nextgpt.evaluation import evaluate_generation

    notes: list[str] = []
    image = evaluate_generation(
        tiny_model,
        dataset / "cc3m.json",
        "image",
        tmp_path / "img",
        max_new_tokens=4,
        progress=False,
        metric_options={"fid_feature": TinyFeature(), "fid_size": 32, "clip_model": str(tiny_clip)},
        note=notes.append,
    )
    assert notes == [] and image.skipped == {}
    assert all(math.isfinite(v) for v in image.values().values())
    assert {m.name: m.n for m in image.metrics} == {"clip_score": 3, "fid": 3}
    video = evaluate_generation(
        tiny_model,
        dataset / "webvid.json",
        "video",
        tmp_path / "vid",
        max_new_tokens=4,
        progress=False,
        metric_options={"clip_model": str(tiny_clip)},
        decode={"num_frames": 2, "steps": 1},
        note=notes.append,
    )
    assert list(video.values()) == ["clipsim"] and math.isfinite(video.values()["clipsim"])
    assert len(list((tmp_path / "vid").glob("*.mp4"))) == 2


def test_eval_reports_bad_arguments_clearly(dataset, tmp_path):
    from nextgpt.errors import NextGPTError

    with (
        pytest.warns(UserWarning, match="skipped 2 bad record"),
        pytest.raises(ConfigError, match="no valid image pair records"),
    ):
        run_eval(
            "--model",
            "tiny",
            "--task",
            "caption",
            "--modality",
            "image",
            "--data",
            str(dataset / "webvid.json"),
            "--quiet",
        )
    with pytest.raises(NextGPTError, match="smell"):
        run_eval(
            "--model",
            "tiny",
            "--task",
            "caption",
            "--modality",
            "smell",
            "--data",
            str(dataset / "cc3m.json"),
            "--quiet",
        )
    with pytest.raises(ConfigError, match="--metric-option: expected NAME=VALUE"):
        run_eval(
            "--model",
            "tiny",
            "--task",
            "generate",
            "--modality",
            "image",
            "--data",
            str(dataset / "cc3m.json"),
            "--metric-option",
            "clip_model",
            "--quiet",
        )
    with pytest.raises(ConfigError, match="is not a file"):
        run_eval(
            "--model",
            "tiny",
            "--task",
            "caption",
            "--modality",
            "image",
            "--data",
            str(tmp_path / "none.json"),
        )
