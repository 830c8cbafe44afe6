"""The diffusers decoders on their tiny random pipelines: Stable Diffusion, AudioLDM and zeroscope
(UNets), PixArt-Sigma and Stable Audio (diffusion transformers, conditions with attention masks).

Every test runs on the CPU, offline, in a private ``NEXTGPT_HOME``. The central checks compare
the toolkit against diffusers itself: ``condition_from_text`` must be what the pipeline feeds
its denoiser, and ``generate(condition)`` must equal a direct pipeline call with the same
embeddings and seed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from nextgpt.conditions import Condition, ConditionPart, ConditionSpec
from nextgpt.config import DecodeOptions
from nextgpt.decoders import DiffusersDecoder, materialise_tiny
from nextgpt.errors import ConfigError, NextGPTError
from nextgpt.licences import CC_BY_NC_4, CC_BY_NC_SA_4, OPENRAIL_M, OPENRAIL_PLUS_PLUS, STABILITY_COMMUNITY
from nextgpt.testing import random_condition
from nextgpt_audio.decoder import AudioLDMDecoder
from nextgpt_audio.media import AudioClip
from nextgpt_audio.stable_audio import StableAudioDecoder
from nextgpt_image.decoder import StableDiffusionDecoder
from nextgpt_image.pixart import PixArtSigmaDecoder
from nextgpt_video.decoder import TextToVideoDecoder
from nextgpt_video.media import VideoClip
from PIL import Image

CAPTIONS = ["a red circle on a white background", "a low beep"]


@dataclass
class Case:
    """One backend: its decoder class, tiny condition spec and a small set of decode options."""

    cls: type[DiffusersDecoder]
    spec: ConditionSpec
    options: DecodeOptions
    media: type
    licence: Any
    direct: dict[str, Any] = field(default_factory=dict)
    """Arguments of a direct pipeline call matching ``options`` (sizes, output type...)."""
    prompt: dict[str, Any] = field(default_factory=dict)
    """More arguments of a direct call with text prompts, to embed them as the decoder does."""
    changing_extra: dict[str, Any] = field(default_factory=lambda: {"eta": 1.0})
    """A pipeline call argument the toolkit leaves to ``extra`` that changes the output."""


def masked(length: int, width: int, mask: str) -> ConditionSpec:
    return ConditionSpec(parts=(ConditionPart(name="prompt_embeds", shape=(length, width), mask=mask),))


CASES = {
    "image": Case(
        StableDiffusionDecoder,
        ConditionSpec.sequence(77, 32),
        DecodeOptions(steps=2, guidance=7.5, height=32, width=48, seed=3),
        Image.Image,
        OPENRAIL_M,
        {"height": 32, "width": 48, "output_type": "pil"},
    ),
    "audio": Case(
        AudioLDMDecoder,
        ConditionSpec.pooled_vector(8),
        DecodeOptions(steps=2, guidance=2.5, seconds=0.032, seed=3),
        AudioClip,
        CC_BY_NC_SA_4,
        {"audio_length_in_s": 0.032, "output_type": "np"},
    ),
    "video": Case(
        TextToVideoDecoder,
        ConditionSpec.sequence(77, 4),
        DecodeOptions(steps=2, guidance=9.0, num_frames=3, height=24, width=40, seed=3),
        VideoClip,
        CC_BY_NC_4,
        {"num_frames": 3, "height": 24, "width": 40, "output_type": "np"},
    ),
    "image-pixart": Case(
        PixArtSigmaDecoder,
        masked(16, 32, "prompt_attention_mask"),
        DecodeOptions(steps=2, guidance=4.5, height=32, width=48, seed=3),
        Image.Image,
        OPENRAIL_PLUS_PLUS,
        {"height": 32, "width": 48, "output_type": "pil", "use_resolution_binning": False, "negative_prompt": None},
        {"clean_caption": False, "max_sequence_length": 16, "negative_prompt": ""},
        {"timesteps": [999, 600]},
    ),
    "audio-stable": Case(
        StableAudioDecoder,
        masked(16, 16, "attention_mask"),
        DecodeOptions(steps=2, guidance=7.0, seconds=0.25, seed=3),
        AudioClip,
        STABILITY_COMMUNITY,
        {"audio_end_in_s": 0.25, "output_type": "np"},
        {},
        {"audio_start_in_s": 0.125},
    ),
}


@pytest.fixture(scope="module", autouse=True)
def nextgpt_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private NEXTGPT_HOME, so tiny folders are built here and not in ~/.cache."""
    home = tmp_path_factory.mktemp("nextgpt-home")
    previous = os.environ.get("NEXTGPT_HOME")
    os.environ["NEXTGPT_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("NEXTGPT_HOME", None)
    else:
        os.environ["NEXTGPT_HOME"] = previous


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine the thread
    hand-offs make each call several times slower; restored after the module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


_shared: dict[str, DiffusersDecoder] = {}


@pytest.fixture
def loaded(case: Case, nextgpt_home: Path) -> DiffusersDecoder:
    """One loaded tiny decoder per backend, shared by the tests that do not check loading."""
    key = case.cls.backend
    if key not in _shared:
        _shared[key] = case.cls("tiny")
    return _shared[key]


def as_array(item: Any) -> np.ndarray:
    if isinstance(item, Image.Image):
        return np.asarray(item)
    if isinstance(item, AudioClip):
        return item.waveform
    if isinstance(item, VideoClip):
        return item.frames
    raise TypeError(type(item))


def same_media(a: list[Any], b: list[Any]) -> bool:
    if len(a) != len(b):
        return False
    return all(np.array_equal(as_array(x), as_array(y)) for x, y in zip(a, b, strict=True))


def close_media(a: list[Any], b: list[Any]) -> bool:
    """Equal up to float rounding: 1 level for uint8, about 1e-5 for floats."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        x, y = as_array(x), as_array(y)
        if x.dtype == np.uint8:
            if np.abs(x.astype(np.int16) - y.astype(np.int16)).max() > 1:
                return False
        elif not np.allclose(x, y, rtol=1e-4, atol=1e-5):
            return False
    return True


def direct_media(case: Case, output: Any, decoder: DiffusersDecoder) -> list[Any]:
    """Media from a direct pipeline call, converted here (not by the decoder)."""
    if case.media is Image.Image:
        return list(output.images)
    if case.cls is AudioLDMDecoder:
        return [AudioClip(a[None, :], 16000) for a in output.audios]
    if case.cls is StableAudioDecoder:
        return [AudioClip(a, 16000) for a in output.audios]
    frames = (np.asarray(output.frames) * 255).round().clip(0, 255).astype(np.uint8)
    return [VideoClip(f, 8.0) for f in frames]


def capture_denoiser_inputs(decoder: DiffusersDecoder) -> tuple[list[dict[str, torch.Tensor]], Any]:
    """Record the tensor keyword arguments of each denoiser call (UNet or transformer)."""
    seen: list[dict[str, torch.Tensor]] = []

    def hook(module: Any, args: tuple, kwargs: dict) -> None:
        seen.append({k: v.detach().clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)})

    return seen, decoder.denoiser.register_forward_pre_hook(hook, with_kwargs=True)


def text_condition(seen: dict[str, torch.Tensor]) -> torch.Tensor:
    """The text condition a denoiser call got: cross-attention states, else AudioLDM's class labels."""
    return seen["encoder_hidden_states"] if "encoder_hidden_states" in seen else seen["class_labels"]


def assert_same_condition(a: Condition, b: Condition, atol: float = 0.0) -> None:
    assert a.spec == b.spec
    for name in a.spec.names:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol)
        if a.mask(name) is not None:
            assert torch.equal(a.mask(name), b.mask(name))


# ----- shape and laziness ---------------------------------------------------------------------


def test_condition_spec_without_loading(case: Case) -> None:
    decoder = case.cls("tiny")
    assert decoder.condition_spec == case.spec
    assert not decoder.is_loaded
    assert decoder.licence == case.licence
    assert decoder.identity == f"{case.cls.backend}:tiny-v1"


def test_condition_from_text_is_what_the_pipeline_feeds_its_denoiser(case: Case, loaded: DiffusersDecoder) -> None:
    """The pipeline's denoiser gets the same inputs for the captions as for their conditions;
    where it reads the condition as is (every backend but Stable Audio, which projects it and
    appends its seconds), they are the condition itself, then the negative."""
    condition = loaded.condition_from_text(CAPTIONS)
    assert condition.spec == case.spec and condition.batch_size == 2
    assert not any(t.requires_grad for t in condition.tensors.values())
    negative = loaded.negative_condition()
    assert negative is None if case.cls is StableAudioDecoder else negative.batch_size == 1

    pipe = loaded.pipeline
    seen, handle = capture_denoiser_inputs(loaded)
    one_step = {"num_inference_steps": 1, **case.direct, **case.prompt}
    try:
        pipe(CAPTIONS, generator=torch.Generator().manual_seed(0), **one_step)
        loaded.generate(condition, DecodeOptions(steps=1, seed=0, guidance=case.options.guidance))
    finally:
        handle.remove()
    from_text, from_condition = seen
    assert from_text.keys() == from_condition.keys()
    for key, value in from_text.items():
        torch.testing.assert_close(from_condition[key], value, rtol=0, atol=1e-6, msg=key)
    if case.cls is StableAudioDecoder:
        return
    part = case.spec.parts[0]
    fed = text_condition(from_text).reshape(4, *part.shape)  # classifier-free guidance: [negatives, conditions]
    torch.testing.assert_close(fed[2:], condition[part.name], rtol=0, atol=1e-6)
    torch.testing.assert_close(fed[:2], negative.expand(2)[part.name], rtol=0, atol=1e-6)
    if part.mask is not None:
        fed_mask = from_text["encoder_attention_mask"].reshape(4, part.tokens)
        assert torch.equal(fed_mask[2:], condition.mask(part.name))
        assert torch.equal(fed_mask[:2], negative.expand(2).mask(part.name))
        assert condition.mask(part.name).sum(1).tolist() != [part.tokens] * 2  # captions shorter than Q
    if case.cls is AudioLDMDecoder:  # AudioLDM's text path L2-normalises the CLAP embedding
        torch.testing.assert_close(condition["prompt_embeds"].norm(dim=-1), torch.ones(2))


def test_negative_condition_computed_once(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = case.cls("tiny")
    calls = []
    original = decoder._encode_negative

    def counting(pipeline: Any) -> Condition | None:
        calls.append(1)
        return original(pipeline)

    monkeypatch.setattr(decoder, "_encode_negative", counting)
    first = decoder.negative_condition()
    assert decoder.negative_condition() is first
    condition = random_condition(case.spec, 2)
    decoder.generate(condition, case.options)
    decoder.generate(condition, case.options)
    assert len(calls) == 1


def test_pipeline_loaded_once(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline_class = case.cls.pipeline_class()
    loads = []
    original = pipeline_class.from_pretrained.__func__

    def counting(cls: type, *args: Any, **kwargs: Any) -> Any:
        loads.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(pipeline_class, "from_pretrained", classmethod(counting))
    decoder = case.cls("tiny")
    assert decoder.condition_spec == case.spec
    assert loads == []
    decoder.condition_from_text(CAPTIONS)
    pipe = decoder.pipeline
    decoder.generate(random_condition(case.spec, 2), case.options)
    decoder.generate(random_condition(case.spec, 1), case.options)
    assert decoder.pipeline is pipe
    assert len(loads) == 1
    assert Path(loads[0]) == case.cls.tiny_folder()  # tiny loads through the local-folder path


# ----- generation -----------------------------------------------------------------------------


def test_generate_media(case: Case, loaded: DiffusersDecoder) -> None:
    out = loaded.generate(random_condition(case.spec, 2), case.options)
    assert len(out) == 2
    assert all(isinstance(item, case.media) for item in out)
    item = out[0]
    if isinstance(item, Image.Image):
        assert item.size == (48, 32) and item.mode == "RGB"
    elif isinstance(item, AudioClip):
        channels, samples = (2, 4000) if case.cls is StableAudioDecoder else (1, 512)  # stereo, 0.25 s
        assert item.sample_rate == 16000 and item.waveform.shape == (channels, samples)
        assert item.waveform.dtype == np.float32
    else:
        assert item.frames.shape == (3, 24, 40, 3) and item.frames.dtype == np.uint8 and item.fps == 8.0


def test_generate_is_seeded(case: Case, loaded: DiffusersDecoder) -> None:
    condition = random_condition(case.spec, 2)
    a = loaded.generate(condition, case.options)
    b = loaded.generate(condition, case.options)
    c = loaded.generate(condition, case.options.model_copy(update={"seed": 4}))
    assert same_media(a, b)
    assert not np.array_equal(as_array(a[0]), as_array(c[0]))


def direct_pipeline_media(case: Case, loaded: DiffusersDecoder, condition: Condition, **extra: Any) -> list[Any]:
    """The media of calling the diffusers pipeline itself with ``condition`` (each part and mask
    under its keyword, the negative's under ``negative_<keyword>``) and the case's options."""
    embeds: dict[str, torch.Tensor] = {}
    negative = loaded.negative_condition()
    for source, prefix in ((condition, ""), (None if negative is None else negative.expand(2), "negative_")):
        if source is None:
            continue
        for part in case.spec.parts:
            embeds[prefix + part.name] = source[part.name][: condition.batch_size]
            if part.mask:
                embeds[prefix + part.mask] = source.mask(part.name)[: condition.batch_size]
    output = loaded.pipeline(
        **embeds,
        num_inference_steps=case.options.steps,
        guidance_scale=case.options.guidance,
        generator=torch.Generator().manual_seed(case.options.seed),
        **case.direct,
        **extra,
    )
    return direct_media(case, output, loaded)


def test_generate_equals_direct_pipeline_call(case: Case, loaded: DiffusersDecoder) -> None:
    """The toolkit adds nothing: same embeddings + same seed = the media of diffusers itself."""
    condition = random_condition(case.spec, 2, seed=11)
    toolkit = loaded.generate(condition, case.options)
    assert same_media(toolkit, direct_pipeline_media(case, loaded, condition))
    if any(p.mask for p in case.spec.parts):  # the mask reaches the pipeline too
        half = {
            p.name: (torch.arange(p.tokens) < p.tokens // 2).long().expand(2, -1) for p in case.spec.parts if p.mask
        }
        partly = Condition(case.spec, condition.tensors, half)
        toolkit = loaded.generate(partly, case.options)
        assert same_media(toolkit, direct_pipeline_media(case, loaded, partly))
        assert not same_media(toolkit, loaded.generate(condition, case.options))


def test_extra_options_reach_the_pipeline_call(case: Case, loaded: DiffusersDecoder) -> None:
    """``DecodeOptions.extra`` is passed to the pipeline as keyword arguments (``eta``: DDIM's
    stochasticity; PixArt: custom timesteps; Stable Audio: the start in seconds), equal to
    calling diffusers with it; names it does not take are errors."""
    condition = random_condition(case.spec, 1, seed=5)
    noisy = case.options.model_copy(update={"extra": case.changing_extra})
    toolkit = loaded.generate(condition, noisy)
    assert not same_media(toolkit, loaded.generate(condition, case.options))
    assert same_media(toolkit, direct_pipeline_media(case, loaded, condition, **case.changing_extra))
    with pytest.raises(ConfigError, match=r"extra.etaa: .* takes no argument 'etaa'"):
        loaded.generate(condition, case.options.model_copy(update={"extra": {"etaa": 1.0}}))
    with pytest.raises(ConfigError, match=r"extra.num_inference_steps is set by the toolkit"):
        loaded.generate(condition, case.options.model_copy(update={"extra": {"num_inference_steps": 3}}))


def test_decode_options_merge_and_flatten() -> None:
    defaults = DecodeOptions(steps=10, extra={"eta": 0.0, "guidance_rescale": 0.7})
    merged = DecodeOptions(guidance=2.0, extra={"eta": 1.0}).merged_over(defaults)
    assert merged.steps == 10 and merged.guidance == 2.0
    assert merged.extra == {"eta": 1.0, "guidance_rescale": 0.7}
    flat = DecodeOptions.from_flat({"steps": 4, "eta": 0.5, "grid_size": 32})
    assert flat.steps == 4 and flat.extra == {"eta": 0.5, "grid_size": 32}
    with pytest.raises(ConfigError, match="steps"):
        DecodeOptions.from_flat({"steps": 0}, "--decode-option")


def test_generate_from_caption_equals_pipeline_prompt(case: Case, loaded: DiffusersDecoder) -> None:
    """``generate(condition_from_text(c))`` is the pipeline's own text-to-media for ``c``.

    Equal up to rounding: the pipeline embeds the empty negative prompt at batch size B, the
    decoder once at batch size 1, and BLAS kernels round differently for the two.
    """
    toolkit = loaded.generate(loaded.condition_from_text(CAPTIONS), case.options)
    output = loaded.pipeline(
        CAPTIONS,
        num_inference_steps=case.options.steps,
        guidance_scale=case.options.guidance,
        generator=torch.Generator().manual_seed(case.options.seed),
        **{**case.direct, **case.prompt},
    )
    assert close_media(toolkit, direct_media(case, output, loaded))


def test_tiny_defaults_are_small(case: Case, loaded: DiffusersDecoder) -> None:
    out = loaded.generate(random_condition(case.spec, 1), DecodeOptions(seed=0))
    assert as_array(out[0]).size <= 4 * 32 * 32 * 3


def test_condition_of_wrong_shape(case: Case, loaded: DiffusersDecoder) -> None:
    with pytest.raises(ValueError, match="condition must be prompt_embeds"):
        loaded.generate(random_condition(ConditionSpec.sequence(5, 7), 2), case.options)
    with pytest.raises(ValueError, match="condition must be"):
        loaded.generate(torch.randn(2, *case.spec.parts[0].shape), case.options)  # a bare tensor


# ----- sources --------------------------------------------------------------------------------


def test_tiny_folder_built_once_and_loads_as_local_folder(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXTGPT_HOME", str(tmp_path))
    builds = []
    original = case.cls.build_tiny_pipeline.__func__

    def counting(cls: type) -> Any:
        builds.append(1)
        return original(cls)

    monkeypatch.setattr(case.cls, "build_tiny_pipeline", classmethod(counting))
    state = torch.get_rng_state()
    first, second = case.cls("tiny"), case.cls("tiny")
    assert first.condition_spec == second.condition_spec == case.spec
    assert len(builds) == 1
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    folder = tmp_path / "tiny" / f"{case.cls.backend}-v1"
    assert (folder / "model_index.json").is_file()
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == [folder.name]  # no staging left

    local = case.cls(str(folder))
    assert local.identity == f"{case.cls.backend}:{folder}"
    condition = random_condition(case.spec, 2)
    assert same_media(first.generate(condition, case.options), local.generate(condition, case.options))
    assert_same_condition(local.condition_from_text(CAPTIONS), first.condition_from_text(CAPTIONS), atol=1e-5)


def test_tiny_weights_are_deterministic(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"{case.cls.backend}-v1"
    shared = materialise_tiny(name, case.cls.build_tiny_pipeline)
    monkeypatch.setenv("NEXTGPT_HOME", str(tmp_path))
    fresh = materialise_tiny(name, case.cls.build_tiny_pipeline)
    assert fresh != shared
    weights = sorted(shared.glob("*/*.safetensors"))
    assert weights
    for path in weights:
        twin = fresh / path.relative_to(shared)
        assert path.read_bytes() == twin.read_bytes(), path.relative_to(shared)


def test_tiny_race_loser_discards_its_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process renames its folder into place while this one builds: ours is dropped."""
    monkeypatch.setenv("NEXTGPT_HOME", str(tmp_path))
    final = tmp_path / "tiny" / "race-v1"

    class Pipeline:
        def save_pretrained(self, folder: Path) -> None:
            Path(folder, "model_index.json").write_text("{}")
            Path(folder, "mine").write_text("")

    def build() -> Pipeline:
        final.mkdir(parents=True)
        (final / "model_index.json").write_text('{"winner": true}')
        return Pipeline()

    assert materialise_tiny("race-v1", build) == final
    assert not (final / "mine").exists()
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == ["race-v1"]


def test_loading_prints_no_deprecation_notice(capfd: pytest.CaptureFixture[str]) -> None:
    for cls in (AudioLDMDecoder, TextToVideoDecoder, StableDiffusionDecoder, PixArtSigmaDecoder, StableAudioDecoder):
        cls("tiny").condition_from_text(["x"])
    err = capfd.readouterr().err
    assert "deprecated" not in err and "Loading" not in err


def test_missing_folder_is_an_error_naming_it(case: Case, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-pipeline"
    with pytest.raises(NextGPTError, match="no-such-pipeline"):
        case.cls(str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NextGPTError, match="model_index.json"):
        case.cls(str(tmp_path / "empty"))


def test_unreachable_hub_id_is_an_error_naming_it(case: Case) -> None:
    decoder = case.cls("nextgpt-tests/no-such-model", local_files_only=True)
    assert not decoder.is_loaded
    with pytest.raises(NextGPTError, match="nextgpt-tests/no-such-model"):
        decoder.generate(random_condition(ConditionSpec.sequence(77, 8), 1), DecodeOptions())
    with pytest.raises(NextGPTError, match="nextgpt-tests/no-such-model"):
        decoder.condition_from_text(["x"])


def test_unknown_option_is_a_config_error(case: Case) -> None:
    with pytest.raises(ConfigError, match="steps_per_second"):
        case.cls("tiny", steps_per_second=3)


def test_to_moves_and_keeps_working(case: Case) -> None:
    decoder = case.cls("tiny", device="cpu", dtype="float32", defaults={"steps": 1})
    assert decoder.defaults.steps == 1
    decoder.to("cpu")
    assert not decoder.is_loaded
    condition = decoder.condition_from_text(CAPTIONS[:1])
    decoder.to("cpu", torch.float32)
    assert decoder.pipeline.device.type == "cpu"
    assert len(decoder.generate(condition, DecodeOptions(seed=0))) == 1


def test_plugins_build_the_decoders() -> None:
    from nextgpt_audio import build_audioldm, build_stable_audio
    from nextgpt_image import build_pixart_sigma, build_stable_diffusion
    from nextgpt_video import build_zeroscope

    assert isinstance(build_stable_diffusion("tiny"), StableDiffusionDecoder)
    assert isinstance(build_audioldm("tiny"), AudioLDMDecoder)
    pixart = build_pixart_sigma("tiny", max_sequence_length=8)
    assert isinstance(pixart, PixArtSigmaDecoder) and pixart.condition_spec == masked(8, 32, "prompt_attention_mask")
    assert isinstance(build_stable_audio("tiny"), StableAudioDecoder)
    video = build_zeroscope("tiny", fps=12)
    assert isinstance(video, TextToVideoDecoder) and video.fps == 12.0


def test_denoising_loss_of_every_decoder_reaches_the_condition():
    """The optional training loss: the frozen denoiser's noise-prediction error for target media,
    differentiable in the condition (what the output projector produces)."""
    from nextgpt_audio.examples import example_audio
    from nextgpt_image.examples import example_image
    from nextgpt_video.examples import example_video

    torch.manual_seed(0)
    cases = (
        (StableDiffusionDecoder("tiny"), example_image()),
        (TextToVideoDecoder("tiny"), example_video()),
        (AudioLDMDecoder("tiny"), example_audio(seconds=0.05, sample_rate=22050)),  # resampled, padded
        (PixArtSigmaDecoder("tiny"), example_image()),
        (StableAudioDecoder("tiny"), example_audio(seconds=0.05, sample_rate=22050)),  # resampled, stereo
    )
    for decoder, media in cases:
        assert decoder.supports_denoising_loss
        leaves = {p.name: torch.randn(2, *p.shape, requires_grad=True) for p in decoder.condition_spec.parts}
        loss = decoder.denoising_loss(Condition(decoder.condition_spec, leaves), [media, media], min_snr_gamma=5.0)
        loss.backward()
        assert loss.ndim == 0 and torch.isfinite(loss), decoder.backend
        for leaf in leaves.values():
            assert leaf.grad is not None and leaf.grad.abs().sum() > 0, decoder.backend
        assert not any(p.requires_grad for p in decoder.denoiser.parameters())


def test_audioldm_log_mel_follows_its_definition():
    """The mel front end against a plain numpy computation of AudioLDM's definition (peak 0.5,
    centred reflect-padded |STFT| with a periodic Hann window, Slaney mel bank, log floor 1e-5),
    and a 1 kHz tone is loudest in the band around 1 kHz."""
    from nextgpt_audio.mel import MelSettings, log_mel
    from transformers.audio_utils import mel_filter_bank

    settings = MelSettings(sample_rate=16000, n_mels=64, hop=160)  # AudioLDM-l-full's vocoder
    seconds, frames = 0.5, 50
    t = np.arange(int(seconds * settings.sample_rate)) / settings.sample_rate
    wave = 0.3 * np.sin(2 * np.pi * 1000 * t) + 0.01
    got = log_mel(torch.from_numpy(wave).float(), settings, frames).numpy()
    assert got.shape == (frames, 64)

    x = wave - wave.mean()
    x = 0.5 * x / (np.abs(x).max() + 1e-8)
    x = np.pad(x[: frames * settings.hop], settings.n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(settings.n_fft) / settings.n_fft)
    spectrum = np.stack(
        [np.abs(np.fft.rfft(window * x[k * settings.hop : k * settings.hop + settings.n_fft])) for k in range(frames)]
    )
    bank = mel_filter_bank(settings.n_fft // 2 + 1, 64, 0.0, 8000.0, 16000, norm="slaney", mel_scale="slaney")
    expected = np.log(np.maximum(spectrum @ bank, 1e-5))
    np.testing.assert_allclose(got, expected, atol=2e-3)

    centres = np.argmax(bank, axis=0) * settings.sample_rate / settings.n_fft
    assert abs(centres[got.mean(0).argmax()] - 1000) < 150
    silent = log_mel(torch.zeros(800), settings, frames).numpy()
    assert np.allclose(silent, np.log(1e-5))


def test_stable_audio_generation_hides_only_torchsde_boundary_warnings() -> None:
    """The cosine DPM-Solver makes torchsde warn on every call about times a rounding step past
    its interval; generate silences those and nothing else."""
    import warnings

    decoder = _shared.get("stable-audio") or StableAudioDecoder("tiny")
    condition = random_condition(decoder.condition_spec, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoder.generate(condition, DecodeOptions(steps=2, seed=0))
        warnings.warn("another warning", UserWarning, stacklevel=1)
    messages = [str(w.message) for w in caught]
    assert not any(m.startswith("Should have t") for m in messages), messages
    assert "another warning" in messages
