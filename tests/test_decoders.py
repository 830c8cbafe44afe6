"""The diffusers decoders (Stable Diffusion, AudioLDM, zeroscope) on their tiny random pipelines.

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
from nextgpt.config import DecodeOptions
from nextgpt.decoders import DiffusersDecoder, materialise_tiny
from nextgpt.errors import ConfigError, NextGPTError
from nextgpt.licences import CC_BY_NC_4, CC_BY_NC_SA_4, OPENRAIL_M
from nextgpt_audio.decoder import AudioLDMDecoder
from nextgpt_audio.media import AudioClip
from nextgpt_image.decoder import StableDiffusionDecoder
from nextgpt_video.decoder import TextToVideoDecoder
from nextgpt_video.media import VideoClip
from PIL import Image

CAPTIONS = ["a red circle on a white background", "a low beep"]


@dataclass
class Case:
    """One backend: its decoder class, tiny condition shape and a small set of decode options."""

    cls: type[DiffusersDecoder]
    shape: tuple[int, int]
    options: DecodeOptions
    media: type
    licence: Any
    direct: dict[str, Any] = field(default_factory=dict)
    """Size arguments of a direct pipeline call matching ``options``."""


CASES = {
    "image": Case(
        StableDiffusionDecoder,
        (77, 32),
        DecodeOptions(steps=2, guidance=7.5, height=32, width=48, seed=3),
        Image.Image,
        OPENRAIL_M,
        {"height": 32, "width": 48, "output_type": "pil"},
    ),
    "audio": Case(
        AudioLDMDecoder,
        (1, 8),
        DecodeOptions(steps=2, guidance=2.5, seconds=0.032, seed=3),
        AudioClip,
        CC_BY_NC_SA_4,
        {"audio_length_in_s": 0.032, "output_type": "np"},
    ),
    "video": Case(
        TextToVideoDecoder,
        (77, 4),
        DecodeOptions(steps=2, guidance=9.0, num_frames=3, height=24, width=40, seed=3),
        VideoClip,
        CC_BY_NC_4,
        {"num_frames": 3, "height": 24, "width": 40, "output_type": "np"},
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
    if case.cls is StableDiffusionDecoder:
        return list(output.images)
    if case.cls is AudioLDMDecoder:
        return [AudioClip(a[None, :], 16000) for a in output.audios]
    frames = (np.asarray(output.frames) * 255).round().clip(0, 255).astype(np.uint8)
    return [VideoClip(f, 8.0) for f in frames]


def capture_denoiser_condition(pipeline: Any) -> tuple[list[torch.Tensor], Any]:
    """Record the text condition each UNet call gets (cross-attention states or class labels)."""
    seen: list[torch.Tensor] = []

    def hook(module: Any, args: tuple, kwargs: dict) -> None:
        value = kwargs.get("encoder_hidden_states")
        if value is None:
            value = kwargs.get("class_labels")
        seen.append(value.detach().clone())

    return seen, pipeline.unet.register_forward_pre_hook(hook, with_kwargs=True)


# ----- shape and laziness ---------------------------------------------------------------------


def test_condition_shape_without_loading(case: Case) -> None:
    decoder = case.cls("tiny")
    assert decoder.condition_shape == case.shape
    assert not decoder.is_loaded
    assert decoder.licence == case.licence
    assert decoder.identity == f"{case.cls.backend}:tiny-v1"


def test_condition_from_text_is_what_the_pipeline_feeds_its_denoiser(case: Case, loaded: DiffusersDecoder) -> None:
    condition = loaded.condition_from_text(CAPTIONS)
    q, d = case.shape
    assert condition.shape == (2, q, d)
    assert not condition.requires_grad
    negative = loaded.negative_condition()
    assert negative.shape == (1, q, d)

    pipe = loaded.pipeline
    seen, handle = capture_denoiser_condition(pipe)
    try:
        pipe(
            CAPTIONS,
            num_inference_steps=1,
            generator=torch.Generator().manual_seed(0),
            **case.direct,
        )
    finally:
        handle.remove()
    fed = seen[0].reshape(4, q, d)  # classifier-free guidance: [negatives, conditions]
    torch.testing.assert_close(fed[2:], condition, rtol=0, atol=1e-6)
    torch.testing.assert_close(fed[:2], negative.expand(2, q, d), rtol=0, atol=1e-6)
    if case.cls is AudioLDMDecoder:  # AudioLDM's text path L2-normalises the CLAP embedding
        torch.testing.assert_close(condition.norm(dim=-1), torch.ones(2, 1))


def test_negative_condition_computed_once(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = case.cls("tiny")
    calls = []
    original = decoder._encode_negative

    def counting(pipeline: Any) -> torch.Tensor:
        calls.append(1)
        return original(pipeline)

    monkeypatch.setattr(decoder, "_encode_negative", counting)
    first = decoder.negative_condition()
    assert decoder.negative_condition() is first
    condition = torch.randn(2, *case.shape)
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
    assert decoder.condition_shape == case.shape
    assert loads == []
    decoder.condition_from_text(CAPTIONS)
    pipe = decoder.pipeline
    decoder.generate(torch.randn(2, *case.shape), case.options)
    decoder.generate(torch.randn(1, *case.shape), case.options)
    assert decoder.pipeline is pipe
    assert len(loads) == 1
    assert Path(loads[0]) == case.cls.tiny_folder()  # tiny loads through the local-folder path


# ----- generation -----------------------------------------------------------------------------


def test_generate_media(case: Case, loaded: DiffusersDecoder) -> None:
    out = loaded.generate(torch.randn(2, *case.shape), case.options)
    assert len(out) == 2
    assert all(isinstance(item, case.media) for item in out)
    item = out[0]
    if isinstance(item, Image.Image):
        assert item.size == (48, 32) and item.mode == "RGB"
    elif isinstance(item, AudioClip):
        assert item.sample_rate == 16000 and item.waveform.shape == (1, 512)
        assert item.waveform.dtype == np.float32
    else:
        assert item.frames.shape == (3, 24, 40, 3) and item.frames.dtype == np.uint8 and item.fps == 8.0


def test_generate_is_seeded(case: Case, loaded: DiffusersDecoder) -> None:
    condition = torch.randn(2, *case.shape)
    a = loaded.generate(condition, case.options)
    b = loaded.generate(condition, case.options)
    c = loaded.generate(condition, case.options.model_copy(update={"seed": 4}))
    assert same_media(a, b)
    assert not np.array_equal(as_array(a[0]), as_array(c[0]))


def direct_pipeline_media(case: Case, loaded: DiffusersDecoder, condition: torch.Tensor, **extra: Any) -> list[Any]:
    """The media of calling the diffusers pipeline itself with ``condition`` and the case's options."""
    negative = loaded.negative_condition().expand(condition.shape[0], *case.shape)
    prompt_embeds, negative_embeds = condition, negative
    if case.cls is AudioLDMDecoder:  # AudioLDM takes 2-D prompt_embeds
        prompt_embeds, negative_embeds = condition[:, 0], negative[:, 0]
    output = loaded.pipeline(
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_embeds,
        num_inference_steps=case.options.steps,
        guidance_scale=case.options.guidance,
        generator=torch.Generator().manual_seed(case.options.seed),
        **case.direct,
        **extra,
    )
    return direct_media(case, output, loaded)


def test_generate_equals_direct_pipeline_call(case: Case, loaded: DiffusersDecoder) -> None:
    """The toolkit adds nothing: same embeddings + same seed = the media of diffusers itself."""
    generator = torch.Generator().manual_seed(11)
    condition = torch.randn(2, *case.shape, generator=generator)
    toolkit = loaded.generate(condition, case.options)
    assert same_media(toolkit, direct_pipeline_media(case, loaded, condition))


def test_extra_options_reach_the_pipeline_call(case: Case, loaded: DiffusersDecoder) -> None:
    """``DecodeOptions.extra`` is passed to the pipeline as keyword arguments (``eta``: DDIM's
    stochasticity), equal to calling diffusers with it; names it does not take are errors."""
    condition = torch.randn(1, *case.shape, generator=torch.Generator().manual_seed(5))
    noisy = case.options.model_copy(update={"extra": {"eta": 1.0}})
    toolkit = loaded.generate(condition, noisy)
    assert not same_media(toolkit, loaded.generate(condition, case.options))
    assert same_media(toolkit, direct_pipeline_media(case, loaded, condition, eta=1.0))
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
        **case.direct,
    )
    assert close_media(toolkit, direct_media(case, output, loaded))


def test_tiny_defaults_are_small(case: Case, loaded: DiffusersDecoder) -> None:
    out = loaded.generate(torch.randn(1, *case.shape), DecodeOptions(seed=0))
    assert as_array(out[0]).size <= 4 * 32 * 32 * 3


def test_condition_of_wrong_shape(case: Case, loaded: DiffusersDecoder) -> None:
    with pytest.raises(ValueError, match="condition must have shape"):
        loaded.generate(torch.randn(2, 5, 7), case.options)


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
    assert first.condition_shape == second.condition_shape == case.shape
    assert len(builds) == 1
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    folder = tmp_path / "tiny" / f"{case.cls.backend}-v1"
    assert (folder / "model_index.json").is_file()
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == [folder.name]  # no staging left

    local = case.cls(str(folder))
    assert local.identity == f"{case.cls.backend}:{folder}"
    condition = torch.randn(2, *case.shape)
    assert same_media(first.generate(condition, case.options), local.generate(condition, case.options))
    torch.testing.assert_close(local.condition_from_text(CAPTIONS), first.condition_from_text(CAPTIONS))


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
    for cls in (AudioLDMDecoder, TextToVideoDecoder, StableDiffusionDecoder):
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
        decoder.generate(torch.randn(1, 77, 8), DecodeOptions())
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
    from nextgpt_audio import build_audioldm
    from nextgpt_image import build_stable_diffusion
    from nextgpt_video import build_zeroscope

    assert isinstance(build_stable_diffusion("tiny"), StableDiffusionDecoder)
    assert isinstance(build_audioldm("tiny"), AudioLDMDecoder)
    video = build_zeroscope("tiny", fps=12)
    assert isinstance(video, TextToVideoDecoder) and video.fps == 12.0


def test_denoising_loss_of_every_decoder_reaches_the_condition():
    """The optional training loss: the frozen UNet's noise-prediction error for target media,
    differentiable in the condition (what the output projector produces)."""
    from nextgpt_audio.examples import example_audio
    from nextgpt_image.examples import example_image
    from nextgpt_video.examples import example_video

    torch.manual_seed(0)
    cases = (
        (StableDiffusionDecoder("tiny"), example_image()),
        (TextToVideoDecoder("tiny"), example_video()),
        (AudioLDMDecoder("tiny"), example_audio(seconds=0.05, sample_rate=22050)),  # resampled, padded
    )
    for decoder, media in cases:
        condition = torch.randn(2, *decoder.condition_shape, requires_grad=True)
        loss = decoder.denoising_loss(condition, [media, media], min_snr_gamma=5.0)
        loss.backward()
        assert loss.ndim == 0 and torch.isfinite(loss), decoder.backend
        assert condition.grad is not None and condition.grad.abs().sum() > 0, decoder.backend
        assert not any(p.requires_grad for p in decoder.pipeline.unet.parameters())


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
