"""The commercial-use decoders on their tiny random pipelines, against diffusers itself: FLUX.1
[schnell] (images), CogVideoX-2B and Wan 2.1 T2V-1.3B (video).

For each: the condition spec is read without loading weights; ``condition_from_text`` is what
the pipeline feeds its transformer for the captions (the stage-2 target); ``generate(condition)``
equals a direct pipeline call with the same embeddings and seed. The decoder-backend conformance
kit runs on them in tests/test_conformance.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from nextgpt.conditions import Condition, ConditionPart, ConditionSpec
from nextgpt.config import DecodeOptions
from nextgpt.decoders import DiffusersDecoder
from nextgpt.testing import random_condition
from nextgpt_image.flux import FluxSchnellDecoder
from nextgpt_video.cogvideox import CogVideoXDecoder
from nextgpt_video.wan import WanDecoder

CAPTIONS = ["a red circle on a white background", "a ball rolling"]


@dataclass
class Case:
    """One backend: its decoder class, tiny condition spec, decode options and the matching
    arguments of a direct pipeline call."""

    cls: type[DiffusersDecoder]
    spec: ConditionSpec
    options: DecodeOptions
    direct: dict[str, Any] = field(default_factory=dict)
    """Arguments of a direct pipeline call matching ``options`` (sizes, output type...)."""
    conditioned_on: tuple[str, ...] = ("encoder_hidden_states",)
    """The transformer's keyword arguments that carry the text condition."""


CASES = {
    "flux-schnell": Case(
        FluxSchnellDecoder,
        ConditionSpec(
            parts=(
                ConditionPart(name="prompt_embeds", shape=(16, 32)),
                ConditionPart(name="pooled_prompt_embeds", shape=(32,)),
            )
        ),
        DecodeOptions(steps=2, guidance=0.0, height=32, width=48, seed=3),
        {"height": 32, "width": 48, "output_type": "pil", "max_sequence_length": 16},
        ("encoder_hidden_states", "pooled_projections"),
    ),
    "cogvideox": Case(
        CogVideoXDecoder,
        ConditionSpec.sequence(16, 32),
        DecodeOptions(steps=2, guidance=6.0, num_frames=5, height=16, width=32, seed=3),
        {"num_frames": 5, "height": 16, "width": 32, "output_type": "np", "max_sequence_length": 16},
    ),
    "wan": Case(
        WanDecoder,
        ConditionSpec.sequence(16, 32),
        DecodeOptions(steps=2, guidance=5.0, num_frames=5, height=16, width=32, seed=3),
        {"num_frames": 5, "height": 16, "width": 32, "output_type": "np", "max_sequence_length": 16},
    ),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads on a busy machine; restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


_shared: dict[str, DiffusersDecoder] = {}


@pytest.fixture
def loaded(case: Case) -> DiffusersDecoder:
    """One loaded tiny decoder per backend, shared by the tests of this module."""
    if case.cls.backend not in _shared:
        _shared[case.cls.backend] = case.cls("tiny")
    return _shared[case.cls.backend]


def as_arrays(media: list[Any]) -> list[np.ndarray]:
    return [np.asarray(getattr(item, "frames", item)) for item in media]


def direct_call(loaded: DiffusersDecoder, case: Case, condition: Condition, **kwargs: Any) -> Any:
    """The pipeline called directly with ``condition``'s tensors (and the cached negative, if
    any) under diffusers' own keywords."""
    negative = loaded.negative_condition()
    embeddings = {name: condition[name] for name in case.spec.names}
    if negative is not None:
        embeddings.update(
            {f"negative_{n}": negative[n].expand(condition.batch_size, *negative[n].shape[1:]) for n in case.spec.names}
        )
    with torch.no_grad():
        return loaded.pipeline(
            **embeddings,
            num_inference_steps=case.options.steps,
            guidance_scale=case.options.guidance,
            generator=torch.Generator().manual_seed(case.options.seed),
            **{**case.direct, **kwargs},
        )


def test_condition_spec_without_loading_and_a_commercial_licence(case: Case) -> None:
    decoder = case.cls("tiny")
    assert decoder.condition_spec == case.spec
    assert not decoder.is_loaded
    assert decoder.licence.commercial == "yes" and decoder.licence.name == "Apache-2.0" and decoder.licence.source


def test_generate_equals_direct_pipeline_call(case: Case, loaded: DiffusersDecoder) -> None:
    condition = random_condition(case.spec, 2, seed=11)
    toolkit = loaded.generate(condition, case.options)
    output = direct_call(loaded, case, condition)
    direct = list(getattr(output, "images", None) or getattr(output, "frames", None))
    if case.direct.get("output_type") == "np":  # float frames, converted here as the decoder documents
        direct = [np.clip(np.round(np.asarray(f) * 255.0), 0, 255).astype(np.uint8) for f in direct]
    assert len(toolkit) == len(direct) == 2
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(as_arrays(toolkit), direct, strict=True))
    other = loaded.generate(random_condition(case.spec, 2, seed=12), case.options)
    assert not all(np.array_equal(a, b) for a, b in zip(as_arrays(toolkit), as_arrays(other), strict=True))


def test_condition_from_text_is_what_the_transformer_gets(case: Case, loaded: DiffusersDecoder) -> None:
    """The pipeline given the captions feeds its transformer exactly what it gets given
    ``condition_from_text(captions)``: the stage-2 target is the pipeline's own embedding."""
    condition = loaded.condition_from_text(CAPTIONS)
    assert condition.spec == case.spec and condition.batch_size == 2
    seen: list[dict[str, torch.Tensor]] = []

    def hook(module: Any, args: tuple, kwargs: dict) -> None:
        seen.append({k: v.detach().clone() for k, v in kwargs.items() if k in case.conditioned_on})

    handle = loaded.denoiser.register_forward_pre_hook(hook, with_kwargs=True)
    options = case.options.model_copy(update={"steps": 1})
    try:
        with torch.no_grad():
            loaded.pipeline(
                CAPTIONS,
                num_inference_steps=1,
                guidance_scale=case.options.guidance,
                generator=torch.Generator().manual_seed(0),
                **case.direct,
            )
        calls = len(seen)  # one per guidance branch
        loaded.generate(condition, options)
    finally:
        handle.remove()
    assert calls and len(seen) == 2 * calls
    for from_text, from_condition in zip(seen[:calls], seen[calls:], strict=True):
        assert sorted(from_text) == sorted(case.conditioned_on)
        for name in case.conditioned_on:
            torch.testing.assert_close(from_condition[name], from_text[name], rtol=0, atol=0)


def test_flow_matching_loss_regresses_the_velocity() -> None:
    """The rectified-flow loss is zero for the exact velocity ``noise - x`` (recovered here from
    the noisy input and sigma) and not for another prediction; min-SNR weights never raise it."""
    from nextgpt.training.diffusion import flow_matching_loss

    latents = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0))

    def exact(noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.view(-1, 1, 1)
        return (noisy - latents) / s  # (1 - s) x + s n - x = s (n - x)

    perfect = flow_matching_loss(exact, latents, generator=torch.Generator().manual_seed(1))
    assert float(perfect) < 1e-8
    plain = flow_matching_loss(lambda n, s: torch.zeros_like(n), latents, generator=torch.Generator().manual_seed(1))
    weighted = flow_matching_loss(
        lambda n, s: torch.zeros_like(n), latents, min_snr_gamma=1.0, generator=torch.Generator().manual_seed(1)
    )
    assert float(plain) > 0.5 and 0 < float(weighted) <= float(plain)


def test_denoising_loss_in_bfloat16(case: Case) -> None:
    """In 16-bit the loss runs in the transformer's own dtype: diffusers keeps some of Wan's
    parameters in float32, so the first parameter's dtype is not the transformer's."""
    from nextgpt_image.examples import example_image
    from nextgpt_video.examples import example_video

    decoder = case.cls("tiny", dtype="bfloat16")
    target = example_image() if case.cls is FluxSchnellDecoder else example_video()
    condition = decoder.condition_from_text(CAPTIONS).to(dtype=torch.float32)
    leaves = {name: condition[name].clone().requires_grad_(True) for name in condition.spec.names}
    loss = decoder.denoising_loss(Condition(condition.spec, leaves), [target, target], min_snr_gamma=5.0)
    loss.backward()
    assert torch.isfinite(loss) and all(leaf.grad is not None for leaf in leaves.values())
