"""The toy model's encoder: the tiny ImageBind with its vision and audio towers pre-trained on
freshly rendered world items until every attribute (colour, shape, position, direction, pitch,
timbre) is linearly readable from the embedding, the stand-in for the pretrained ImageBind.
Random tiny features are not readable: a linear probe finds shape and position near chance."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from nextgpt.progress import bar
from torch import nn

from toy_world import world as W
from toy_world.settings import (
    BuildBudget,
)


def _encoder_inputs(concept: W.Concept, rng: random.Random) -> torch.Tensor:
    """One item's input to its ImageBind tower, exactly as the encoder gives it (one clip: the
    toy world's sounds and videos are shorter than a clip, so ImageBind's clips and crops are
    all the same view and their mean is this one)."""
    from nextgpt_audio.imagebind import audio_to_imagebind
    from nextgpt_image.imagebind import image_to_imagebind
    from nextgpt_video.imagebind import video_to_imagebind
    from PIL import Image

    if concept.modality == "image":
        return image_to_imagebind(Image.fromarray(W.render_image(concept, rng)))
    if concept.modality == "audio":
        return audio_to_imagebind(W.render_audio(concept, rng), W.SAMPLE_RATE)[:1]
    return video_to_imagebind(W.render_video(concept, rng), W.VIDEO_FPS)[:1]


def _fast_inputs(concept: W.Concept, rng: random.Random) -> torch.Tensor:
    """Like `_encoder_inputs` for images and videos, several times faster (the pixels scaled and
    normalised in one pass, in the order they are drawn; the first view only), for rendering
    fresh training items at every step."""
    from nextgpt_image.imagebind import CLIP_MEAN, CLIP_STD, IMAGE_SIZE

    if concept.modality == "image":
        frames = W.render_image(concept, rng)[None]
    else:
        frames = W.render_video(concept, rng, only=(0, W.VIDEO_FRAMES - 1))  # ImageBind's 2 frames of a short clip
    std = torch.tensor(CLIP_STD)
    clip = torch.from_numpy(frames).float().mul_(1.0 / (255.0 * std)).sub_(torch.tensor(CLIP_MEAN) / std)
    clip = clip.permute(3, 0, 1, 2)  # [3, T, H, W]
    if clip.shape[-1] != IMAGE_SIZE or clip.shape[-2] != IMAGE_SIZE:
        raise ValueError(f"the world's pictures are {clip.shape[-1]} pixels wide; ImageBind reads {IMAGE_SIZE}")
    return clip[:, 0] if concept.modality == "image" else clip[None]


TOWERS = {"image": "vision", "audio": "audio", "video": "vision"}
SHAPE_WEIGHT = 3.0
"""Weight of the shape attribute in the encoder's pre-training loss: the attribute the tiny
vision tower finds hardest (colour, position and direction are read almost at once)."""


class AttributeHeads(nn.Module):
    """Linear read-outs of each attribute from an L2-normalised embedding (cosine classifier)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(
            {
                f"{m}_{name}": nn.Linear(dim, len(values), bias=False)
                for m in W.MODALITIES
                for name, values in zip(W.ATTRIBUTE_NAMES[m], W.ATTRIBUTE_VALUES[m], strict=True)
            }
        )
        self.scale = nn.Parameter(torch.tensor(10.0))

    def logits(self, modality: str, embeds: torch.Tensor) -> list[torch.Tensor]:
        x = F.normalize(embeds.float(), dim=-1)
        return [
            self.scale * F.linear(x, F.normalize(self.heads[f"{modality}_{name}"].weight, dim=-1))
            for name in W.ATTRIBUTE_NAMES[modality]
        ]

    def loss_and_accuracy(
        self, modality: str, embeds: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over the attributes, and the share of items read right on all."""
        logits = self.logits(modality, embeds)
        weights = [SHAPE_WEIGHT if name == "shape" else 1.0 for name in W.ATTRIBUTE_NAMES[modality]]
        loss = torch.stack(
            [w * F.cross_entropy(lg, labels[:, k]) for k, (w, lg) in enumerate(zip(weights, logits, strict=True))]
        ).sum()
        correct = torch.stack([lg.argmax(-1) == labels[:, k] for k, lg in enumerate(logits)], 1)
        return loss, correct.all(1).float().mean()

    def accuracy_by_attribute(self, modality: str, embeds: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        return {
            name: round(float((lg.argmax(-1) == labels[:, k]).float().mean()), 3)
            for k, (name, lg) in enumerate(zip(W.ATTRIBUTE_NAMES[modality], self.logits(modality, embeds), strict=True))
        }


def attribute_labels(concepts: Sequence[W.Concept]) -> torch.Tensor:
    return torch.tensor(
        [[W.ATTRIBUTE_VALUES[c.modality][k].index(v) for k, v in enumerate(c.attributes)] for c in concepts]
    )


def pretrain_imagebind(
    train: dict[str, list[W.Concept]],
    report_on: dict[str, dict[str, list[W.Concept]]],
    budget: BuildBudget,
    seed: int,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, dict[str, Any]]:
    """The tiny ImageBind with its vision tower (images and videos) and audio tower trained to
    make every attribute linearly readable from the L2-normalised embedding (a cosine
    classifier per attribute on top, thrown away afterwards).

    Items come from pools of ``budget.encoder_items`` per modality; at each step
    ``budget.encoder_refresh`` images and videos are replaced by freshly rendered ones. Returns the model and a
    report: per attribute, the share of fresh items read right through the encoder's real
    preprocessing, for each group of captions in ``report_on``."""
    from nextgpt.encoders.imagebind import load_imagebind, run_tower

    rng = random.Random(f"{seed}-encoder-items")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = load_imagebind("tiny")
        trainable = [
            p
            for tower in ("vision", "audio")
            for part in (
                model.modality_preprocessors,
                model.modality_trunks,
                model.modality_heads,
                model.modality_postprocessors,
            )
            for p in part[tower].parameters()
        ]
        for p in trainable:
            p.requires_grad_(True)
        heads = AttributeHeads(int(model.modality_heads["vision"][-1].out_features))
        t0 = time.time()
        sounds = list(W.cycle_concepts(train["audio"], budget.encoder_items, rng))
        sound_x = torch.stack([_encoder_inputs(c, rng) for c in sounds])
        sound_y = attribute_labels(sounds)
        pools = {}
        for m in ("image", "video"):
            chosen = list(W.cycle_concepts(train[m], budget.encoder_items, rng))
            pools[m] = (torch.stack([_fast_inputs(c, rng) for c in chosen]).half(), attribute_labels(chosen))
        log(f"  encoder: {budget.encoder_items} items per modality prepared in {time.time() - t0:.1f}s")
        # The vision patch stem sees 1176 inputs per patch and has no norm after it: at the full
        # learning rate Adam inflates it within a few steps until the patch content drowns the
        # position embeddings, and positions can no longer be learned. It trains 100x slower.
        stems = {id(p) for p in model.modality_preprocessors["vision"].rgbt_stem.parameters()}
        optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in trainable if id(p) not in stems] + list(heads.parameters())},
                {"params": [p for p in trainable if id(p) in stems], "lr": 3e-5},
            ],
            lr=3e-3,
            weight_decay=0.01,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.1, 1 - s / budget.encoder_steps))
        generator = torch.Generator().manual_seed(seed)
        model.train()
        steps = bar(total=budget.encoder_steps, desc="toy ImageBind pre-training", unit="step")
        for _step in range(budget.encoder_steps):
            total = torch.zeros(())
            for m in W.MODALITIES:
                if m == "audio":
                    pick = torch.randint(len(sound_y), (budget.encoder_batch,), generator=generator)
                    x, y = sound_x[pick], sound_y[pick]
                else:
                    # a pool of rendered items, a few replaced by fresh ones at every step
                    for slot in rng.sample(range(len(pools[m][1])), budget.encoder_refresh):
                        concept = rng.choice(train[m])
                        pools[m][0][slot] = _fast_inputs(concept, rng)  # (to half as it is copied in)
                        pools[m][1][slot] = attribute_labels([concept])[0]
                    pick = torch.randint(len(pools[m][1]), (budget.encoder_batch,), generator=generator)
                    x, y = pools[m][0][pick].float(), pools[m][1][pick]
                loss, _ = heads.loss_and_accuracy(m, run_tower(model, TOWERS[m], x), y)
                total = total + loss
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            schedule.step()
            steps.update(1)
            steps.set_postfix(loss=f"{total.item():.3f}", refresh=False)
        steps.close()
        model.eval()
        model.requires_grad_(False)
        report: dict[str, Any] = {"steps": budget.encoder_steps, "sounds": budget.encoder_items}
        with torch.no_grad():
            for split, pools in report_on.items():
                for m in pools:
                    chosen = list(W.cycle_concepts(pools[m], 96, rng))
                    x = torch.stack([_encoder_inputs(c, rng) for c in chosen])
                    report[f"{split}_{m}"] = heads.accuracy_by_attribute(
                        m, run_tower(model, TOWERS[m], x), attribute_labels(chosen)
                    )
    return model, report
