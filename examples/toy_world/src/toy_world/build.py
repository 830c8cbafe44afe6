"""Building the `toy` model: NExT-GPT's system at toy scale, with frozen parts that know the
toy world the way Vicuna, ImageBind and the diffusion text encoders know ours.

What `build_toy` writes into ``out``::

    llm/                  a tiny LLaMA and its byte-level BPE tokenizer (Hugging Face folder),
                          pre-trained as a plain language model on the world's text (captions,
                          requests, answers, questions; media left out): the stand-in for Vicuna
    imagebind_toy.pth     the tiny ImageBind, its vision and audio towers pre-trained on freshly
                          rendered items to make the world's attributes linearly readable
                          (random tiny features are not: a linear probe finds shape and position
                          near chance); loaded as encoder source with ``variant: tiny``
    decoders/audioldm/    the tiny AudioLDM pipeline with a CLAP text encoder pre-trained on the
                          sound captions (the tiny one maps captions that are permutations of each
                          other to the same vector)
    decoders/zeroscope/   the tiny zeroscope pipeline with a random text encoder of width 32
                          instead of 4 (`build_video_pipeline` says why); images keep the random
                          ``tiny`` Stable Diffusion, whose CLIP text encoder serves as is
    config.json, model.safetensors
                          the `NextGPTModel` folder (untrained projectors): load it with
                          ``NextGPTModel.from_pretrained(out)``
    build.json            what was trained, for how long, and how well it reads the world

The frozen stand-ins are pre-trained on the whole world (every caption, as Vicuna and ImageBind
were pre-trained on the whole web), never on the written data files. What the three NExT-GPT
stages train (projectors, signal-token rows, LoRA) sees only the train split, so held-out
figures are on captions the trained parts never saw.

Paths inside ``config.json`` are absolute: move the folder and rebuild it (or edit them).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toy_world import world as W
from toy_world.generate import (
    ANSWERS,
    CAPTION_QUESTIONS,
    REQUESTS,
    text_questions,
)

PLUGINS = ["image", "audio", "video"]
DECODER_BACKENDS = {"image": "stable-diffusion", "audio": "audioldm", "video": "zeroscope"}
STAGE1_PROMPT = "Generate a caption."
"""The stage-1 request (`nextgpt.data.DatasetSource.prompt`'s default)."""


@dataclass
class BuildBudget:
    """Steps and sizes of the build's pre-training runs."""

    llm_steps: int = 1000
    llm_batch: int = 32
    llm_lr: float = 3e-3
    encoder_steps: int = 800
    encoder_batch: int = 32
    encoder_items: int = 320
    """Items per modality in the encoder's pre-training pools."""
    encoder_refresh: int = 32
    """Image and video items replaced by freshly rendered ones at each step (sounds are fixed:
    their filterbanks are slow to compute)."""
    clap_steps: int = 400


BUDGETS = {
    "full": BuildBudget(),
    "small": BuildBudget(llm_steps=300, encoder_steps=300, encoder_batch=16, encoder_items=128, encoder_refresh=16,
                         clap_steps=200),
}


@dataclass
class ToyArchitecture:
    """Sizes of the toy model's parts."""

    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    lora_r: int = 8
    lora_alpha: int = 16
    input_projector: str = "mlp"
    input_tokens: int = 8
    projector_d_model: int = 64
    projector_layers: int = 2
    projector_ffn: int = 128


# -- text ------------------------------------------------------------------------------------------


def world_texts(captions: dict[str, list[str]], seed: int = 0) -> list[list[tuple[str, str]]]:
    """The LLM's pre-training dialogues, as (human, gpt) turn lists, built from ``captions``
    (modality -> captions; the build passes every caption of the world): captioning questions,
    requests answered in words, text-only questions, and the MosIT dialogues' text. Media and
    signal tokens are never part of it: the LLM is a text model."""
    rng = random.Random(f"{seed}-llm-corpus")
    dialogues: list[list[tuple[str, str]]] = []
    for m, caps in captions.items():
        for caption in caps:
            concept = W.concept_from_caption(m, caption)
            dialogues.append([(STAGE1_PROMPT, caption)])
            for question in CAPTION_QUESTIONS[m]:
                dialogues.append([(question, f"It is {caption}.")])
            for request in REQUESTS[m]:
                dialogues.append([(request.format(c=caption), rng.choice(ANSWERS).format(c=caption))])
            for question, answer in text_questions(concept):
                dialogues.append([(question, answer)])
            dialogues.append([(rng.choice(REQUESTS[m]).format(c=caption), rng.choice(ANSWERS).format(c=caption)),
                              rng.choice(text_questions(concept))])
    rng.shuffle(dialogues)
    return dialogues


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (special tokens ``<unk> <s> </s>``,
    ``</s>`` doubling as padding), as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>",
        clean_up_tokenization_spaces=False,
    )


def render_text(dialogue: Sequence[tuple[str, str]], template_name: str = "vicuna_v0") -> str:
    from nextgpt.templates import Turn, get_template

    turns = [Turn(role=r, text=t) for human, gpt in dialogue for r, t in (("user", human), ("assistant", gpt))]
    return get_template(template_name).render(turns, add_generation_prompt=False)


def render_ids(tokenizer: Any, dialogue: Sequence[tuple[str, str]], template_name: str = "vicuna_v0") -> list[int]:
    """Token ids of a text dialogue exactly as `NextGPTModel.pack` builds them: BOS, then each
    template segment tokenized on its own."""
    from nextgpt.templates import Turn, get_template

    turns = []
    for human, gpt in dialogue:
        turns += [Turn(role="user", text=human), Turn(role="assistant", text=gpt)]
    ids = [tokenizer.bos_token_id]
    for segment in get_template(template_name).segments(turns, add_generation_prompt=False):
        ids += tokenizer(segment.text, add_special_tokens=False).input_ids
    return ids


def pretrain_llm(
    tokenizer: Any, dialogues: list[list[tuple[str, str]]], arch: ToyArchitecture, budget: BuildBudget, seed: int,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, dict[str, float]]:
    """A tiny LLaMA trained as a plain language model on the rendered dialogues."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers, num_attention_heads=arch.num_heads, num_key_value_heads=arch.num_heads,
        max_position_embeddings=512, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        sequences = [torch.tensor(render_ids(tokenizer, d)) for d in dialogues]
        optimizer = torch.optim.AdamW(model.parameters(), lr=budget.llm_lr, betas=(0.9, 0.98), weight_decay=0.01)
        warmup = max(1, budget.llm_steps // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warmup, max(0.05, 1 - s / budget.llm_steps))
        )
        generator = torch.Generator().manual_seed(seed)
        model.train()
        losses = []
        for step in range(budget.llm_steps):
            picks = torch.randint(len(sequences), (budget.llm_batch,), generator=generator).tolist()
            batch = [sequences[i] for i in picks]
            width = max(len(s) for s in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id)
            labels = torch.full((len(batch), width), -100)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, : len(seq)] = seq
                labels[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if (step + 1) % max(1, budget.llm_steps // 5) == 0:
                log(f"  llm step {step + 1}/{budget.llm_steps}: loss {np.mean(losses[-50:]):.3f}")
    model.eval()
    return model, {"final_loss": float(np.mean(losses[-50:])), "steps": budget.llm_steps}


# -- the encoder -----------------------------------------------------------------------------------


def _encoder_inputs(concept: W.Concept, rng: random.Random) -> torch.Tensor:
    """One item's input to its ImageBind tower, exactly as the encoder gives it (one clip: the
    toy world's sounds and videos are shorter than a clip, so ImageBind's clips and crops are
    all the same view and their mean is this one)."""
    from nextgpt.encoders.imagebind import (
        audio_to_imagebind,
        image_to_imagebind,
        video_to_imagebind,
    )
    from PIL import Image

    if concept.modality == "image":
        return image_to_imagebind(Image.fromarray(W.render_image(concept, rng)))
    if concept.modality == "audio":
        return audio_to_imagebind(W.render_audio(concept, rng), W.SAMPLE_RATE)[:1]
    return video_to_imagebind(W.render_video(concept, rng), W.VIDEO_FPS)[:1]


def _fast_inputs(concept: W.Concept, rng: random.Random) -> torch.Tensor:
    """Like `_encoder_inputs` for images and videos, ~15x faster (torch resizing instead of
    PIL's; the first view only), for rendering fresh training items at every step."""
    from nextgpt.encoders.imagebind import CLIP_MEAN, CLIP_STD, IMAGE_SIZE

    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1, 1)
    if concept.modality == "image":
        frames = W.render_image(concept, rng)[None]
    else:
        frames = W.render_video(concept, rng, only=(0, W.VIDEO_FRAMES - 1))  # ImageBind's 2 frames of a short clip
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255.0
    if clip.shape[-1] != IMAGE_SIZE or clip.shape[-2] != IMAGE_SIZE:
        clip = F.interpolate(clip, size=(IMAGE_SIZE, IMAGE_SIZE), align_corners=False,
                             mode="bicubic" if concept.modality == "image" else "bilinear").clamp(0, 1)
    clip = (clip - mean) / std
    return clip[:, 0] if concept.modality == "image" else clip[None]


TOWERS = {"image": "vision", "audio": "audio", "video": "vision"}
SHAPE_WEIGHT = 3.0
"""Weight of the shape attribute in the encoder's pre-training loss: the attribute the tiny
vision tower finds hardest (colour, position and direction are read almost at once)."""


class AttributeHeads(nn.Module):
    """Linear read-outs of each attribute from an L2-normalised embedding (cosine classifier)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({
            f"{m}_{name}": nn.Linear(dim, len(values), bias=False)
            for m in W.MODALITIES
            for name, values in zip(W.ATTRIBUTE_NAMES[m], W.ATTRIBUTE_VALUES[m], strict=True)
        })
        self.scale = nn.Parameter(torch.tensor(10.0))

    def logits(self, modality: str, embeds: torch.Tensor) -> list[torch.Tensor]:
        x = F.normalize(embeds.float(), dim=-1)
        return [self.scale * F.linear(x, F.normalize(self.heads[f"{modality}_{name}"].weight, dim=-1))
                for name in W.ATTRIBUTE_NAMES[modality]]

    def loss_and_accuracy(self, modality: str, embeds: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over the attributes, and the share of items read right on all."""
        logits = self.logits(modality, embeds)
        weights = [SHAPE_WEIGHT if name == "shape" else 1.0 for name in W.ATTRIBUTE_NAMES[modality]]
        loss = torch.stack([w * F.cross_entropy(lg, labels[:, k]) for k, (w, lg) in enumerate(zip(weights, logits, strict=True))]).sum()
        correct = torch.stack([lg.argmax(-1) == labels[:, k] for k, lg in enumerate(logits)], 1)
        return loss, correct.all(1).float().mean()

    def accuracy_by_attribute(self, modality: str, embeds: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        return {name: round(float((lg.argmax(-1) == labels[:, k]).float().mean()), 3)
                for k, (name, lg) in enumerate(zip(W.ATTRIBUTE_NAMES[modality], self.logits(modality, embeds), strict=True))}


def _labels(concepts: Sequence[W.Concept]) -> torch.Tensor:
    return torch.tensor([
        [W.ATTRIBUTE_VALUES[c.modality][k].index(v) for k, v in enumerate(c.attributes)] for c in concepts
    ])


def pretrain_imagebind(
    train: dict[str, list[W.Concept]], report_on: dict[str, dict[str, list[W.Concept]]], budget: BuildBudget, seed: int,
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
        trainable = [p for tower in ("vision", "audio") for part in (
            model.modality_preprocessors, model.modality_trunks, model.modality_heads, model.modality_postprocessors
        ) for p in part[tower].parameters()]
        for p in trainable:
            p.requires_grad_(True)
        heads = AttributeHeads(int(model.modality_heads["vision"][-1].out_features))
        t0 = time.time()
        sounds = list(W.cycle_concepts(train["audio"], budget.encoder_items, rng))
        sound_x = torch.stack([_encoder_inputs(c, rng) for c in sounds])
        sound_y = _labels(sounds)
        pools = {}
        for m in ("image", "video"):
            chosen = list(W.cycle_concepts(train[m], budget.encoder_items, rng))
            pools[m] = (torch.stack([_fast_inputs(c, rng) for c in chosen]).half(), _labels(chosen))
        log(f"  encoder: {budget.encoder_items} items per modality prepared in {time.time() - t0:.1f}s")
        # The vision patch stem sees 1176 inputs per patch and has no norm after it: at the full
        # learning rate Adam inflates it within a few steps until the patch content drowns the
        # position embeddings, and positions can no longer be learned. It trains 100x slower.
        stems = {id(p) for p in model.modality_preprocessors["vision"].rgbt_stem.parameters()}
        optimizer = torch.optim.AdamW([
            {"params": [p for p in trainable if id(p) not in stems] + list(heads.parameters())},
            {"params": [p for p in trainable if id(p) in stems], "lr": 3e-5},
        ], lr=3e-3, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.1, 1 - s / budget.encoder_steps))
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for step in range(budget.encoder_steps):
            total = torch.zeros(())
            for m in W.MODALITIES:
                if m == "audio":
                    pick = torch.randint(len(sound_y), (budget.encoder_batch,), generator=generator)
                    x, y = sound_x[pick], sound_y[pick]
                else:
                    # a pool of rendered items, a few replaced by fresh ones at every step
                    for slot in rng.sample(range(len(pools[m][1])), budget.encoder_refresh):
                        concept = rng.choice(train[m])
                        pools[m][0][slot] = _fast_inputs(concept, rng).half()
                        pools[m][1][slot] = _labels([concept])[0]
                    pick = torch.randint(len(pools[m][1]), (budget.encoder_batch,), generator=generator)
                    x, y = pools[m][0][pick].float(), pools[m][1][pick]
                loss, _ = heads.loss_and_accuracy(m, run_tower(model, TOWERS[m], x), y)
                total = total + loss
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            schedule.step()
            if (step + 1) % max(1, budget.encoder_steps // 5) == 0:
                log(f"  encoder step {step + 1}/{budget.encoder_steps}: loss {total.item():.3f}")
        model.eval()
        model.requires_grad_(False)
        report: dict[str, Any] = {"steps": budget.encoder_steps, "sounds": budget.encoder_items}
        with torch.no_grad():
            for split, pools in report_on.items():
                for m in pools:
                    chosen = list(W.cycle_concepts(pools[m], 96, rng))
                    x = torch.stack([_encoder_inputs(c, rng) for c in chosen])
                    report[f"{split}_{m}"] = heads.accuracy_by_attribute(m, run_tower(model, TOWERS[m], x), _labels(chosen))
    return model, report


# -- the decoders' text encoders -------------------------------------------------------------------


def caption_separation(decoder: Any, captions: Sequence[str]) -> dict[str, float]:
    """How well a decoder's caption embeddings tell ``captions`` apart: mean and max pairwise
    cosine and the smallest pairwise distance relative to the median one (flattened over the
    caption positions no caption pads)."""
    from toy_world.metrics import condition_mask

    embeds = decoder.condition_from_text(list(captions)).float()
    mask = condition_mask(decoder, list(captions))
    keep = mask.any(0)
    flat = embeds[:, keep].flatten(1)
    dist = torch.cdist(flat, flat)
    cos = F.normalize(flat, dim=-1) @ F.normalize(flat, dim=-1).T
    off = ~torch.eye(len(captions), dtype=torch.bool)
    return {
        "mean_pairwise_cosine": round(float(cos[off].mean()), 4),
        "max_pairwise_cosine": round(float(cos[off].max()), 4),
        "min_over_median_distance": round(float(dist[off].min() / dist[off].median()), 4),
    }


def pretrain_clap_text(
    pipeline: Any, train: list[W.Concept], budget: BuildBudget, seed: int, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Give the tiny AudioLDM pipeline a CLAP text encoder that knows the world's sounds.

    The tiny pipeline's CLAP text encoder (1 layer, width 8, 1 head) maps captions that are
    permutations of each other ("a low buzz then a middle beep" / "a middle beep then a low
    buzz") to almost the same vector, and no training separates them. It is replaced (in
    ``pipeline``) by a 2-layer, width-32 one with the same 8-d projection (what the UNet reads)
    and trained so that its normalised caption embedding, the AudioLDM condition, makes every
    attribute of a sound caption linearly readable and keeps distinct captions apart."""
    from transformers import ClapTextModelWithProjection

    config = pipeline.text_encoder.config
    config.update({"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                   "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipeline.text_encoder = ClapTextModelWithProjection(config)
    pipeline.register_modules(text_encoder=pipeline.text_encoder)
    encoder = pipeline.text_encoder
    tokenizer = pipeline.tokenizer
    captions = [c.caption for c in train]
    inputs = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    labels = _labels(train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = AttributeHeads(int(encoder.config.projection_dim))
        encoder.requires_grad_(True)
        encoder.train()
        optimizer = torch.optim.AdamW([*encoder.parameters(), *heads.parameters()], lr=3e-3, weight_decay=0.0)
        for step in range(budget.clap_steps):
            embeds = F.normalize(encoder(inputs.input_ids, attention_mask=inputs.attention_mask).text_embeds, dim=-1)
            loss, acc = heads.loss_and_accuracy("audio", embeds, labels)
            # keep distinct captions apart on the sphere (uniformity), not only separable
            sim = embeds @ embeds.T - 2 * torch.eye(len(captions))
            loss = loss + 0.5 * torch.logsumexp(4 * sim, dim=-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if (step + 1) % max(1, budget.clap_steps // 4) == 0:
                log(f"  CLAP text step {step + 1}/{budget.clap_steps}: loss {loss.item():.3f}, attributes read {acc.item():.2f}")
        encoder.eval()
        encoder.requires_grad_(False)
    return {"steps": budget.clap_steps, "train_attributes_read": round(float(acc), 3)}


def build_video_pipeline(seed: int) -> Any:
    """The tiny zeroscope pipeline of ``nextgpt_video`` with a text encoder (and UNet
    cross-attention) of width 32 instead of 4, random like the image decoder's.

    The width-4 CLIP text encoder does tell the captions apart, but its 77 x 4 conditions are
    far from anything the captions' words predict: a least-squares map from the caption's
    attributes retrieves fewer than half of the video captions, train or held out (width 32:
    over 85 %), so no projector could learn to aim at them."""
    from diffusers import AutoencoderKL, TextToVideoSDPipeline, UNet3DConditionModel
    from nextgpt.decoders import ddim_scheduler
    from nextgpt.decoders.diffusers_base import quiet_diffusers
    from nextgpt.tiny.tokenizers import build_clip_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng(devices=[]), quiet_diffusers():
        torch.manual_seed(seed)
        tokenizer = build_clip_tokenizer()
        unet = UNet3DConditionModel(
            block_out_channels=(8, 8), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            cross_attention_dim=32, attention_head_dim=4, norm_num_groups=2,
        )
        vae = AutoencoderKL(
            block_out_channels=(8,), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
            up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=2,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=1000, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
            max_position_embeddings=tokenizer.model_max_length, projection_dim=32, hidden_act="gelu",
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ))
        return TextToVideoSDPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                     scheduler=ddim_scheduler())


# -- the model folder ------------------------------------------------------------------------------


def toy_config(out: Path, arch: ToyArchitecture, decoder_sources: dict[str, str], seed: int = 13) -> Any:
    """The `NextGPTConfig` of the toy model whose frozen parts are in ``out``."""
    from nextgpt.config import LLMConfig, LoraSettings, NextGPTConfig
    from nextgpt.plugins import load_plugins
    from nextgpt.presets import deep_merge

    registry = load_plugins(allow=PLUGINS)
    llm = LLMConfig(
        source=str((out / "llm").resolve()),
        template="vicuna_v0",
        lora=LoraSettings(r=arch.lora_r, alpha=arch.lora_alpha, dropout=0.0,
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
        max_new_tokens=40,
        temperature=0.0,
    )
    decode = {
        "image": {"steps": 2, "height": 32, "width": 32},
        "audio": {"steps": 2, "seconds": 1.0},
        "video": {"steps": 2, "height": 32, "width": 32, "num_frames": 4},
    }
    modalities = {}
    for m in PLUGINS:
        spec = registry.modality(m)
        modalities[m] = deep_merge(spec.config_model().model_dump(), {
            "encoder": {"backend": "imagebind", "source": str((out / "imagebind_toy.pth").resolve()),
                        "options": {"variant": "tiny"}},
            "decoder": {"backend": DECODER_BACKENDS[m], "source": decoder_sources[m]},
            "input_projector": {"kind": arch.input_projector, "num_tokens": arch.input_tokens},
            "output_projector": {
                "kind": "query_transformer", "d_model": arch.projector_d_model, "num_heads": 4,
                "num_encoder_layers": arch.projector_layers, "num_decoder_layers": arch.projector_layers,
                "dim_feedforward": arch.projector_ffn,
            },
            "decode": decode[m],
        })
    return NextGPTConfig(llm=llm, modalities=modalities, seed=seed)


def build_decoders(
    out: Path, world: dict[str, list[W.Concept]], seed: int, budget: BuildBudget, report: dict[str, Any],
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Write the toy decoders under ``out/decoders``; returns each modality's decoder source."""
    from nextgpt.plugins import load_plugins

    registry = load_plugins(allow=PLUGINS)
    audio_decoder = registry.decoder_backend("audio", DECODER_BACKENDS["audio"]).build("tiny")
    report.setdefault("decoders", {})["audio_tiny"] = caption_separation(audio_decoder, [c.caption for c in world["audio"]])
    report["decoders"]["audio_clap"] = pretrain_clap_text(audio_decoder.pipeline, world["audio"], budget, seed, log)
    audio_decoder.pipeline.save_pretrained(out / "decoders" / "audioldm")
    build_video_pipeline(seed).save_pretrained(out / "decoders" / "zeroscope")
    return {"image": "tiny", "audio": str((out / "decoders" / "audioldm").resolve()),
            "video": str((out / "decoders" / "zeroscope").resolve())}


def write_model(out: Path, arch: ToyArchitecture, sources: dict[str, str], seed: int) -> None:
    """``config.json`` and ``model.safetensors`` of the toy model (untrained projectors)."""
    from nextgpt.model import NextGPTModel
    from nextgpt.plugins import load_plugins

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = NextGPTModel(toy_config(out, arch, sources), load_plugins(allow=PLUGINS))
    model.save_pretrained(out)


def build_toy(
    out: str | Path,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    budget: BuildBudget | str = "full",
    arch: ToyArchitecture | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Build the toy model folder ``out`` (see the module docstring); returns it.

    Args:
        out: the folder to write.
        seed: the world's seed: which captions are held out (must match the world the model
            is trained and evaluated on, `toy_world.generate`'s ``seed`` and
            ``heldout_fraction``), and the seed of every pre-training run.
        heldout_fraction: as for `toy_world.generate`.
        budget: ``"full"``, ``"small"`` or a `BuildBudget`.
        arch: the sizes of the parts.
    """
    from nextgpt.plugins import load_plugins
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    budget = BUDGETS[budget] if isinstance(budget, str) else budget
    arch = arch or ToyArchitecture()
    splits = {m: W.split_concepts(m, seed, heldout_fraction) for m in W.MODALITIES}
    heldout = {m: splits[m][1] for m in W.MODALITIES}
    world = {m: W.concepts(m) for m in W.MODALITIES}
    report: dict[str, Any] = {"seed": seed, "heldout_fraction": heldout_fraction, "budget": asdict(budget),
                              "architecture": asdict(arch), "seconds": {}}
    started = time.time()

    # 1. the LLM: tokenizer and language model pre-trained on the world's text
    t0 = time.time()
    dialogues = world_texts({m: [c.caption for c in world[m]] for m in W.MODALITIES}, seed)
    tokenizer = train_tokenizer([render_text(d) for d in dialogues], arch.vocab_size)
    llm, llm_report = pretrain_llm(tokenizer, dialogues, arch, budget, seed, log)
    llm.save_pretrained(out / "llm")
    tokenizer.save_pretrained(out / "llm")
    report["llm"] = {**llm_report, "dialogues": len(dialogues), "vocab": len(tokenizer),
                     "parameters": sum(p.numel() for p in llm.parameters())}
    report["seconds"]["llm"] = round(time.time() - t0, 1)
    log(f"LLM: {report['llm']['parameters']} parameters, loss {llm_report['final_loss']:.3f} "
        f"({report['seconds']['llm']}s)")

    # 2. the encoder (its report reads attributes of fresh items, split by caption)
    t0 = time.time()
    train = {m: splits[m][0] for m in W.MODALITIES}
    imagebind, enc_report = pretrain_imagebind(world, {"train": train, "heldout": heldout}, budget, seed, log)
    torch.save(imagebind.state_dict(), out / "imagebind_toy.pth")
    report["encoder"] = enc_report
    report["seconds"]["encoder"] = round(time.time() - t0, 1)
    log(f"encoder: {enc_report} ({report['seconds']['encoder']}s)")

    # 3. the decoders: AudioLDM gets a CLAP text encoder that knows the world's sound captions,
    #    zeroscope a wider text encoder; Stable Diffusion stays the random tiny one
    t0 = time.time()
    registry = load_plugins(allow=PLUGINS)
    sources = build_decoders(out, world, seed, budget, report, log)
    for m in W.MODALITIES:
        decoder = registry.decoder_backend(m, DECODER_BACKENDS[m]).build(sources[m])
        report["decoders"][m] = caption_separation(decoder, [c.caption for c in world[m]])
        report["decoders"][f"{m}_heldout"] = caption_separation(decoder, [c.caption for c in heldout[m]])
    report["seconds"]["decoders"] = round(time.time() - t0, 1)
    log(f"decoders: {report['decoders']} ({report['seconds']['decoders']}s)")

    # 4. the model folder
    write_model(out, arch, sources, seed)
    report["seconds"]["total"] = round(time.time() - started, 1)
    (out / "build.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"toy model written to {out} in {report['seconds']['total']}s")
    return out
