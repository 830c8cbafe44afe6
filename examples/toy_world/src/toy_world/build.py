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
    demo.json, demo/      the scripted conversation `nextgpt demo` plays on this folder (requests
                          for held-out captions, a world clip shown and a picture of it asked for)

The frozen stand-ins are pre-trained on the whole world (every caption, as Vicuna and ImageBind
were pre-trained on the whole web), never on the written data files. What the three NExT-GPT
stages train (projectors, signal-token rows, LoRA) sees only the train split, so held-out
figures are on captions the trained parts never saw.

The parts are pre-trained in `toy_world.pretrain_llm`, `toy_world.pretrain_encoder` and
`toy_world.toy_decoders`; their sizes and budgets are in `toy_world.settings`. ``config.json``
names the frozen parts relative to the folder (``./llm``), so the folder can be moved or copied.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from nextgpt.tiny.llm import train_bpe_tokenizer

from toy_world import world as W
from toy_world.demo_script import write_demo
from toy_world.pretrain_encoder import pretrain_imagebind
from toy_world.pretrain_llm import pretrain_llm, render_text, world_texts
from toy_world.settings import (
    BUDGETS,
    DECODER_BACKENDS,
    PLUGINS,
    STAGE1_PROMPT,
    BuildBudget,
    ToyArchitecture,
)
from toy_world.toy_decoders import build_video_pipeline, caption_separation, pretrain_clap_text

__all__ = ["BUDGETS", "PLUGINS", "STAGE1_PROMPT", "BuildBudget", "ToyArchitecture", "build_toy", "toy_config"]


def toy_config(out: Path, arch: ToyArchitecture, decoder_sources: dict[str, str], seed: int = 13) -> Any:
    """The `NextGPTConfig` of the toy model whose frozen parts are in ``out``."""
    from nextgpt.config import LLMConfig, LoraSettings, NextGPTConfig
    from nextgpt.plugins import load_plugins
    from nextgpt.presets import deep_merge

    registry = load_plugins(allow=PLUGINS)
    llm = LLMConfig(
        source=str((out / "llm").resolve()),
        template="vicuna_v0",
        lora=LoraSettings(
            r=arch.lora_r, alpha=arch.lora_alpha, dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]
        ),
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
        modalities[m] = deep_merge(
            spec.config_model().model_dump(),
            {
                "encoder": {
                    "backend": "imagebind",
                    "source": str((out / "imagebind_toy.pth").resolve()),
                    "options": {"variant": "tiny"},
                },
                "decoder": {"backend": DECODER_BACKENDS[m], "source": decoder_sources[m]},
                "input_projector": {"kind": arch.input_projector, "num_tokens": arch.input_tokens},
                "output_projector": {
                    "kind": "query_transformer",
                    "d_model": arch.projector_d_model,
                    "num_heads": 4,
                    "num_encoder_layers": arch.projector_layers,
                    "num_decoder_layers": arch.projector_layers,
                    "dim_feedforward": arch.projector_ffn,
                },
                "decode": decode[m],
            },
        )
    return NextGPTConfig(llm=llm, modalities=modalities, seed=seed)


def build_decoders(
    out: Path,
    world: dict[str, list[W.Concept]],
    seed: int,
    budget: BuildBudget,
    report: dict[str, Any],
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Write the toy decoders under ``out/decoders``; returns each modality's decoder source."""
    from nextgpt.plugins import load_plugins

    registry = load_plugins(allow=PLUGINS)
    audio_decoder = registry.decoder_backend("audio", DECODER_BACKENDS["audio"]).build("tiny")
    report.setdefault("decoders", {})["audio_tiny"] = caption_separation(
        audio_decoder, [c.caption for c in world["audio"]]
    )
    report["decoders"]["audio_clap"] = pretrain_clap_text(audio_decoder.pipeline, world["audio"], budget, seed, log)
    audio_decoder.pipeline.save_pretrained(out / "decoders" / "audioldm")
    build_video_pipeline(seed).save_pretrained(out / "decoders" / "zeroscope")
    return {
        "image": "tiny",
        "audio": str((out / "decoders" / "audioldm").resolve()),
        "video": str((out / "decoders" / "zeroscope").resolve()),
    }


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
    report: dict[str, Any] = {
        "seed": seed,
        "heldout_fraction": heldout_fraction,
        "budget": asdict(budget),
        "architecture": asdict(arch),
        "seconds": {},
    }
    started = time.time()

    # 1. the LLM: tokenizer and language model pre-trained on the world's text
    t0 = time.time()
    dialogues = world_texts({m: [c.caption for c in world[m]] for m in W.MODALITIES}, seed)
    tokenizer = train_bpe_tokenizer([render_text(d) for d in dialogues], arch.vocab_size)
    llm, llm_report = pretrain_llm(tokenizer, dialogues, arch, budget, seed, log)
    llm.save_pretrained(out / "llm")
    tokenizer.save_pretrained(out / "llm")
    report["llm"] = {
        **llm_report,
        "dialogues": len(dialogues),
        "vocab": len(tokenizer),
        "parameters": sum(p.numel() for p in llm.parameters()),
    }
    report["seconds"]["llm"] = round(time.time() - t0, 1)
    log(
        f"LLM: {report['llm']['parameters']} parameters, loss {llm_report['final_loss']:.3f} "
        f"({report['seconds']['llm']}s)"
    )

    # 2. the encoder (its report reads attributes of fresh items, split by caption)
    t0 = time.time()
    train = {m: splits[m][0] for m in W.MODALITIES}
    imagebind, enc_report = pretrain_imagebind(world, {"train": train, "heldout": heldout}, budget, seed, log)
    torch.save(imagebind.state_dict(), out / "imagebind_toy.pth")
    report["encoder"] = enc_report
    report["seconds"]["encoder"] = round(time.time() - t0, 1)
    log(f"encoder: attributes read on held-out items: {_attributes(enc_report)} ({report['seconds']['encoder']}s)")

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
    separation = ", ".join(
        f"{m} {report['decoders'][f'{m}_heldout']['min_over_median_distance']:.2f}" for m in W.MODALITIES
    )
    log(
        f"decoders: held-out caption embeddings apart (closest pair / median distance): {separation} "
        f"({report['seconds']['decoders']}s)"
    )

    # 4. the model folder and its demo script (`nextgpt demo --model <folder>`)
    write_model(out, arch, sources, seed)
    write_demo(out, heldout, seed)
    report["seconds"]["total"] = round(time.time() - started, 1)
    (out / "build.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"toy model written to {out} in {report['seconds']['total']}s")
    return out


def _attributes(encoder_report: dict[str, Any]) -> str:
    """``image colour 1.00 shape 0.91 ...; audio ...``: the held-out rows of the encoder's report."""
    parts = []
    for m in W.MODALITIES:
        scores = encoder_report.get(f"heldout_{m}", {})
        parts.append(f"{m} " + " ".join(f"{name} {value:.2f}" for name, value in scores.items()))
    return "; ".join(parts)
