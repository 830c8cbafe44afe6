"""Decoder conditions (`ConditionSpec`, `Condition`), the output projectors built from them, the
optional denoising loss as part of the `Decoder` interface, and starting a saved model folder
with another decoder."""

from __future__ import annotations

import pytest
import torch
from nextgpt.conditions import Condition, ConditionPart, ConditionSpec
from nextgpt.config import OutputProjectorConfig
from nextgpt.errors import ConfigError
from nextgpt.interfaces import Decoder
from nextgpt.projectors import LinearOutputProjector, QueryTransformerProjector, build_output_projector
from nextgpt.testing import random_condition
from pydantic import ValidationError

SDXL_LIKE = ConditionSpec(
    parts=(
        ConditionPart(name="prompt_embeds", shape=(5, 6), mask="prompt_attention_mask"),
        ConditionPart(name="pooled_prompt_embeds", shape=(4,)),
    )
)
PROJECTOR = OutputProjectorConfig(
    d_model=8, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16
)


# ----- specs -----------------------------------------------------------------------------------------


def test_spec_parts_describe_sequences_vectors_and_masks() -> None:
    sequence, pooled = SDXL_LIKE.parts
    assert (sequence.tokens, sequence.width, sequence.pooled) == (5, 6, False)
    assert (pooled.tokens, pooled.width, pooled.pooled) == (1, 4, True)
    assert str(SDXL_LIKE) == "prompt_embeds [5, 6] masked by prompt_attention_mask + pooled_prompt_embeds [4]"
    assert SDXL_LIKE["pooled_prompt_embeds"] is pooled and SDXL_LIKE.names == ["prompt_embeds", "pooled_prompt_embeds"]
    assert ConditionSpec.sequence(77, 768) == ConditionSpec(
        parts=(ConditionPart(name="prompt_embeds", shape=(77, 768)),)
    )
    with pytest.raises(KeyError, match="no condition part 'x'"):
        SDXL_LIKE["x"]


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ((), "at least 1"),
        (({"name": "a", "shape": (0, 4)},), "positive"),
        (({"name": "a", "shape": (4,), "mask": "m"},), "pooled vector has no attention mask"),
        (({"name": "a", "shape": (2, 4)}, {"name": "a", "shape": (4,)}), "used twice"),
        (({"name": "a", "shape": (2, 4), "mask": "b"}, {"name": "b", "shape": (4,)}), "used twice"),
        (({"name": "not a keyword", "shape": (4,)},), "pattern"),
        (({"name": "a", "shape": (1, 2, 3)},), "shape"),
    ],
)
def test_bad_specs_are_refused(parts, reason) -> None:
    with pytest.raises(ValidationError, match=reason):
        ConditionSpec(parts=parts)


# ----- conditions ------------------------------------------------------------------------------------


def test_condition_checks_names_and_shapes_and_fills_masks() -> None:
    condition = random_condition(SDXL_LIKE, 3)
    assert condition.batch_size == 3 and condition.dtype == torch.float32
    assert torch.equal(condition.mask("prompt_embeds"), torch.ones(3, 5, dtype=torch.long))
    assert condition.mask("pooled_prompt_embeds") is None
    tensors = dict(condition.tensors)
    with pytest.raises(ValueError, match=r"pooled_prompt_embeds must have shape \[3, 4\], got \[3, 5\]"):
        Condition(SDXL_LIKE, {**tensors, "pooled_prompt_embeds": torch.zeros(3, 5)})
    with pytest.raises(ValueError, match="do not match the spec"):
        Condition(SDXL_LIKE, {"prompt_embeds": tensors["prompt_embeds"]})
    with pytest.raises(ValueError, match=r"the mask of prompt_embeds must have shape \[3, 5\]"):
        Condition(SDXL_LIKE, tensors, {"prompt_embeds": torch.ones(3, 4, dtype=torch.long)})
    with pytest.raises(ValueError, match="declares no mask"):
        Condition(SDXL_LIKE, tensors, {"pooled_prompt_embeds": torch.ones(3, 1)})


def test_condition_operations_keep_parts_and_masks_together() -> None:
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    base = random_condition(SDXL_LIKE, 3)
    condition = Condition(SDXL_LIKE, base.tensors, {"prompt_embeds": mask})
    picked = condition.select([2, 0])
    assert torch.equal(picked["pooled_prompt_embeds"], condition["pooled_prompt_embeds"][[2, 0]])
    assert torch.equal(picked.mask("prompt_embeds"), mask[[2, 0]])
    assert condition.select(torch.tensor([False, True, False])).batch_size == 1
    rows = condition.rows()
    assert len(rows) == 3 and all(r.batch_size == 1 for r in rows)
    again = Condition.cat(rows)
    for name in SDXL_LIKE.names:
        assert torch.equal(again[name], condition[name])
    assert torch.equal(again.mask("prompt_embeds"), mask)
    wide = rows[1].expand(4)
    assert wide.batch_size == 4 and torch.equal(wide.mask("prompt_embeds")[3], mask[1])
    with pytest.raises(ValueError, match="only a one-row condition"):
        condition.expand(6)
    half = condition.to(dtype=torch.float16)
    assert half.dtype == torch.float16 and half.mask("prompt_embeds").dtype == torch.long
    with pytest.raises(ValueError, match="different specs"):
        Condition.cat([rows[0], random_condition(ConditionSpec.sequence(5, 6), 1)])


# ----- output projectors -----------------------------------------------------------------------------


def test_query_transformer_keeps_the_released_names_for_one_part() -> None:
    """A one-part spec (sequence or pooled vector) gives the released parameter names, so saved
    folders and the checkpoint conversion keep loading; a pooled part is one query."""
    for spec, queries in ((ConditionSpec.sequence(7, 6), 7), (ConditionSpec.pooled_vector(6), 1)):
        projector = QueryTransformerProjector(16, spec, PROJECTOR)
        names = {k.split(".")[0] for k in projector.state_dict()}
        assert names == {"fc", "tfm", "query_embs", "model"}
        assert projector.query_embs.shape == (1, queries, 8) and projector.model.weight.shape == (6, 8)
        out = projector(torch.randn(2, 3, 16))
        assert out.spec == spec and out[spec.names[0]].shape == (2, *spec.parts[0].shape)


def test_query_transformer_gives_each_part_its_queries_and_output_layer() -> None:
    projector = QueryTransformerProjector(16, SDXL_LIKE, PROJECTOR)
    keys = set(projector.state_dict())
    assert {"model.prompt_embeds.weight", "model.pooled_prompt_embeds.weight", "query_embs"} <= keys
    assert projector.query_embs.shape == (1, 5 + 1, 8)  # Q queries for the sequence, 1 for the vector
    hidden = torch.randn(2, 3, 16)
    out = projector(hidden)
    assert out.spec == SDXL_LIKE and out["pooled_prompt_embeds"].shape == (2, 4)
    assert torch.equal(out.mask("prompt_embeds"), torch.ones(2, 5, dtype=torch.long))  # projected: all ones
    # the pooled vector is the output layer of the last query
    x = projector.tfm(projector.fc(hidden), projector.query_embs.expand(2, -1, -1))
    torch.testing.assert_close(out["pooled_prompt_embeds"], projector.model["pooled_prompt_embeds"](x[:, 5]))
    torch.testing.assert_close(out["prompt_embeds"], projector.model["prompt_embeds"](x[:, :5]))


def test_linear_projector_per_part_and_the_builder() -> None:
    one = LinearOutputProjector(16, 3, ConditionSpec.pooled_vector(6))
    assert set(one.state_dict()) == {"proj.weight", "proj.bias", "mix.weight", "mix.bias"}
    two = build_output_projector(PROJECTOR.model_copy(update={"kind": "linear"}), 16, 3, SDXL_LIKE)
    assert isinstance(two, LinearOutputProjector) and "mix.pooled_prompt_embeds.weight" in two.state_dict()
    out = two(torch.randn(2, 3, 16))
    assert out["prompt_embeds"].shape == (2, 5, 6) and out["pooled_prompt_embeds"].shape == (2, 4)
    assert isinstance(build_output_projector(PROJECTOR, 16, 3, SDXL_LIKE), QueryTransformerProjector)


# ----- the optional denoising loss -------------------------------------------------------------------


class _Minimal(Decoder):
    licence = None  # type: ignore[assignment]
    identity = "minimal:1"

    @property
    def condition_spec(self) -> ConditionSpec:
        return ConditionSpec.pooled_vector(2)

    def condition_from_text(self, captions):
        return ConditionSpec.pooled_vector(2).zeros(len(captions))

    def negative_condition(self):
        return None

    def generate(self, condition, options):
        return [None] * condition.batch_size


def test_denoising_loss_is_declared_not_guessed() -> None:
    decoder = _Minimal()
    assert decoder.supports_denoising_loss is False
    with pytest.raises(ConfigError, match="decoder minimal:1: offers no denoising_loss"):
        decoder.denoising_loss(decoder.condition_from_text(["x"]), [None])
    with pytest.raises(TypeError, match="sets supports_denoising_loss but does not implement denoising_loss"):

        class _Claims(_Minimal):  # noqa: F841 - defining the class is the test
            supports_denoising_loss = True


# ----- a folder started with another decoder ---------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder(registry, tmp_path_factory):
    """A tiny image-only model with trained-looking (perturbed) projectors, saved."""
    from nextgpt.model import NextGPTModel

    model = NextGPTModel.from_pretrained("tiny", registry=registry, modalities=["image"])
    with torch.no_grad():
        for param in [*model.input_projectors.parameters(), *model.output_projectors.parameters()]:
            param.add_(0.5)
    folder = tmp_path_factory.mktemp("image-model")
    model.save_pretrained(folder)
    return folder, model.trainable_state_dict()


def test_a_folder_starts_with_a_new_decoder_and_a_fresh_projector(registry, image_folder) -> None:
    from nextgpt.model import NextGPTModel

    folder, saved = image_folder
    with pytest.warns(
        UserWarning, match=r"output projector 'image' re-initialised: .*'stable-diffusion' to 'pixart-sigma'"
    ):
        model = NextGPTModel.from_pretrained(
            folder, registry=registry, decoders={"image": {"backend": "pixart-sigma", "source": "tiny"}}
        )
    assert model.modality_configs["image"].decoder.backend == "pixart-sigma"
    assert model.output_projectors["image"].condition_spec == model.decoders["image"].condition_spec
    state = model.trainable_state_dict()
    assert torch.equal(state["input_projectors.image.proj.weight"], saved["input_projectors.image.proj.weight"])
    assert state["output_projectors.image.query_embs"].shape != saved["output_projectors.image.query_embs"].shape
    fresh = NextGPTModel.from_pretrained(
        "tiny", registry=registry, modalities=["image"], decoders={"image": {"backend": "pixart-sigma"}}
    )
    torch.testing.assert_close(
        state["output_projectors.image.fc.weight"], fresh.trainable_state_dict()["output_projectors.image.fc.weight"]
    )


def test_a_new_decoder_with_the_same_condition_keeps_the_trained_projector(registry, image_folder, recwarn) -> None:
    from nextgpt.decoders import DiffusersDecoder
    from nextgpt.model import NextGPTModel
    from nextgpt_image.decoder import StableDiffusionDecoder

    folder, saved = image_folder
    copy = str(StableDiffusionDecoder.tiny_folder())  # another source, the same condition spec
    model = NextGPTModel.from_pretrained(
        folder, registry=registry, decoders={"image": {"backend": "stable-diffusion", "source": copy}}
    )
    assert not [w for w in recwarn if "re-initialised" in str(w.message)]
    assert isinstance(model.decoders["image"], DiffusersDecoder) and model.decoders["image"].source == copy
    for key, value in model.trainable_state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_a_reshaped_projector_without_a_new_decoder_is_an_error_with_the_way_out(
    registry, image_folder, tmp_path
) -> None:
    import json
    import shutil

    from nextgpt.model import NextGPTModel

    folder, _ = image_folder
    edited = tmp_path / "edited"
    shutil.copytree(folder, edited)
    meta = json.loads((edited / "config.json").read_text())
    meta["config"]["modalities"]["image"]["decoder"] = {"backend": "pixart-sigma", "source": "tiny", "options": {}}
    (edited / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"output_projectors\.image.*from_pretrained\(folder, decoders="):
        NextGPTModel.from_pretrained(edited, registry=registry)
    with pytest.raises(ConfigError, match=r"decoders.video: .* has no modality 'video'"):
        NextGPTModel.from_pretrained(folder, registry=registry, decoders={"video": {"backend": "zeroscope"}})
    with pytest.raises(ConfigError, match=r"decoders.image.sorce"):
        NextGPTModel.from_pretrained(folder, registry=registry, decoders={"image": {"backend": "x", "sorce": "y"}})


def test_training_starts_a_folder_with_a_new_decoder(registry, image_folder) -> None:
    from nextgpt.training.module import NextGPTLightningModule

    folder, _ = image_folder
    module = NextGPTLightningModule(
        str(folder), stage=2, plugins=["image"], decoders={"image": {"backend": "pixart-sigma", "source": "tiny"}}
    )
    with pytest.warns(UserWarning, match="re-initialised"):
        module.configure_model()
    assert module.model.modality_configs["image"].decoder.backend == "pixart-sigma"
