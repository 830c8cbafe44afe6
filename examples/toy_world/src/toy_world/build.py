"""Building the toy base model (`toy-base`): NExT-GPT's system at toy scale, with frozen parts
that know the toy world the way Vicuna, ImageBind and the diffusion models know ours
(`toy_world.trained_toy` takes it through the three stages to make the trained `toy`).

What `build_toy` writes into ``out``::

    llm/                  a tiny LLaMA and its byte-level BPE tokenizer (Hugging Face folder),
                          pre-trained as a plain language model on the world's text (captions,
                          requests, answers, questions; media left out): the stand-in for Vicuna
    imagebind_toy.pth     the tiny ImageBind, its vision and audio towers pre-trained on freshly
                          rendered items to make the world's attributes linearly readable
                          (random tiny features are not: a linear probe finds shape and position
                          near chance); loaded as encoder source with ``variant: tiny``
    decoders/stable-diffusion/
                          Stable Diffusion sized for 32 x 32 pictures, its VAE and UNet trained to
                          draw every caption of the world (`toy_world.decoder_training`)
    decoders/zeroscope/   zeroscope for 4-frame clips, started from that Stable Diffusion (VAE,
                          text encoder, spatial UNet layers) and trained to move the shapes
    decoders/audioldm/    AudioLDM for one-second sounds: a CLAP text encoder pre-trained on the
                          sound captions (the tiny one maps captions that are permutations of each
                          other to the same vector), then its vocoder, VAE and UNet trained
                          (`toy_world.sound_decoder`)
    config.json, model.safetensors
                          the `NextGPTModel` folder (untrained projectors): load it with
                          ``NextGPTModel.from_pretrained(out)``
    build.json            what was trained, for how long, and how well it reads the world
    demo.json, demo/      the scripted conversation `nextgpt demo` plays on this folder (a picture
                          and a sound of held-out captions asked for, a world picture shown and
                          described, a video of its shape asked for: `toy_world.demo_script`)

The frozen stand-ins are pre-trained on the whole world (every caption, as Vicuna and ImageBind
were pre-trained on the whole web), never on the written data files. What the three NExT-GPT
stages train (projectors, signal-token rows, LoRA) sees only the train split, so held-out
figures are on captions the trained parts never saw.

The decoders take longest, and NExT-GPT's three stages need only their text encoders (the
caption embeddings the output projectors learn): `build_toy`'s ``meanwhile`` runs the stages on a
provisional folder (`write_provisional`) while the decoders' VAEs and UNets train.

The parts are pre-trained in `toy_world.pretrain_llm`, `toy_world.pretrain_encoder` and
`toy_world.toy_decoders`; their sizes and budgets are in `toy_world.settings`. ``config.json``
names the frozen parts relative to the folder (``./llm``), so the folder can be moved or copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from nextgpt.tiny.llm import train_bpe_tokenizer

from toy_world import world as W
from toy_world.decoder_training import FRAMES as VIDEO_FRAMES
from toy_world.decoder_training import SIZE as IMAGE_SIZE
from toy_world.decoder_training import train_pixel_decoder
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
from toy_world.sound_decoder import SOUND_PARTS, build_sound_pipeline, train_sound_decoder
from toy_world.toy_decoders import (
    build_image_pipeline,
    build_video_pipeline,
    caption_separation,
    inflate_from_image,
    pretrain_clap_text,
)

__all__ = ["BUDGETS", "PLUGINS", "STAGE1_PROMPT", "BuildBudget", "ToyArchitecture", "build_toy", "toy_config"]


DECODE_STEPS = 4
"""Denoising steps of the toy decoders (DDIM; classifier-free guidance 3 for pictures, which
the caption dropout of their training makes possible, none for sounds)."""


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
        "image": {"steps": DECODE_STEPS, "guidance": 3.0, "height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "audio": {"steps": DECODE_STEPS, "guidance": 1.0, "seconds": W.AUDIO_SECONDS},
        "video": {
            "steps": DECODE_STEPS,
            "guidance": 3.0,
            "height": IMAGE_SIZE,
            "width": IMAGE_SIZE,
            "num_frames": VIDEO_FRAMES,
        },
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


DECODER_FOLDERS = {"image": "stable-diffusion", "audio": "audioldm", "video": "zeroscope"}
"""Each toy decoder's folder under ``decoders/``."""
SECOND_PROCESS_DECODERS = ("image", "video")
"""The decoders a second process trains, after the sound decoder's vocoder, when the budget asks
for one (video starts from image)."""
HERE_DECODERS = ("audio",)
"""The decoders the building process trains itself (all but the vocoder when there is a second
process), after the LLM, the encoder and ``meanwhile``."""
PIPELINE_BUILDERS = {"image": build_image_pipeline, "audio": build_sound_pipeline, "video": build_video_pipeline}
"""Each toy decoder's pipeline, with random weights, sized for the world."""


def text_ready_pipeline(
    modality: str, seed: int, budget: BuildBudget, log: Callable[[str], None] = print
) -> tuple[Any, dict[str, Any]]:
    """``modality``'s toy pipeline, random but for its text encoder, which is final: the caption
    embeddings (the decoder's conditions) are what they will be once the decoder is trained.
    AudioLDM's CLAP text encoder is pre-trained on the sound captions here; Stable Diffusion's
    and zeroscope's are random and stay so (zeroscope's is Stable Diffusion's). Returns the
    pipeline and a report of what was trained."""
    pipeline = PIPELINE_BUILDERS[modality](seed)
    if modality == "audio":
        t0 = time.time()
        clap = pretrain_clap_text(pipeline, W.concepts("audio"), budget, seed, log)
        return pipeline, {"audio_clap": {**clap, "seconds": round(time.time() - t0, 1)}}
    if modality == "video":
        inflate_from_image(pipeline, PIPELINE_BUILDERS["image"](seed))
    return pipeline, {}


def train_decoders(
    out: Path,
    modalities: tuple[str, ...],
    seed: int,
    budget: BuildBudget,
    log: Callable[[str], None] = print,
    started: dict[str, tuple[Any, dict[str, Any]]] | None = None,
    sound_parts: tuple[str, ...] = SOUND_PARTS,
) -> dict[str, Any]:
    """Build, train and write the toy decoders of ``modalities`` (in this order) under
    ``out/decoders``; returns ``{"sources": {modality: folder}, "report": {...}}``.

    Each decoder learns every caption of the world (`toy_world.decoder_training`,
    `toy_world.sound_decoder`), from its `text_ready_pipeline` (or the one given in ``started``
    with its report); zeroscope starts from the trained Stable Diffusion when ``"image"`` came
    earlier in ``modalities`` (otherwise from the one already written under ``out/decoders``);
    of AudioLDM only ``sound_parts`` train (`toy_world.sound_decoder.SOUND_PARTS`)."""
    from diffusers import StableDiffusionPipeline
    from nextgpt.decoders.diffusers_base import quiet_diffusers
    from nextgpt.plugins import load_plugins

    registry = load_plugins(allow=PLUGINS)
    sources: dict[str, str] = {}
    report: dict[str, Any] = {}
    trained_pipelines: dict[str, Any] = {}
    for m in modalities:
        t0 = time.time()
        concepts = W.concepts(m)
        pipeline, prepared = (started or {}).get(m) or text_ready_pipeline(m, seed, budget, log)
        report.update(prepared)
        if m == "video":  # started from the trained image decoder, as zeroscope was from Stable Diffusion
            image = trained_pipelines.get("image")
            if image is None:
                with quiet_diffusers():
                    image = StableDiffusionPipeline.from_pretrained(out / "decoders" / DECODER_FOLDERS["image"])
            report["video_inflated"] = inflate_from_image(pipeline, image)
        folder = out / "decoders" / DECODER_FOLDERS[m]
        staging = out / "decoders" / f".untrained-{DECODER_FOLDERS[m]}"
        pipeline.save_pretrained(staging)
        decoder = registry.decoder_backend(m, DECODER_BACKENDS[m]).build(str(staging))
        if m == "audio":
            trained = train_sound_decoder(decoder, concepts, budget.audio_decoder, seed, log, parts=sound_parts)
        else:
            trained = train_pixel_decoder(decoder, concepts, budget.decoder_budget(m), seed, log)
        decoder.pipeline.save_pretrained(folder)
        trained_pipelines[m] = decoder.pipeline
        shutil.rmtree(staging)
        report[f"{m}_training"] = {**trained, "seconds": round(time.time() - t0, 1)}
        log(f"{m} decoder trained in {report[f'{m}_training']['seconds']}s: {trained}")
        sources[m] = str(folder.resolve())
    return {"sources": sources, "report": report}


def build_llm(out: Path, seed: int, arch: ToyArchitecture, budget: BuildBudget, log: Callable[[str], None]) -> dict:
    """The toy LLM: a byte-level BPE tokenizer and a tiny LLaMA pre-trained on the world's text,
    written to ``out/llm``; returns its report."""
    t0 = time.time()
    world = {m: [c.caption for c in W.concepts(m)] for m in W.MODALITIES}
    dialogues = world_texts(world, seed)
    tokenizer = train_bpe_tokenizer([render_text(d) for d in dialogues], arch.vocab_size)
    llm, llm_report = pretrain_llm(tokenizer, dialogues, arch, budget, seed, log)
    llm.save_pretrained(out / "llm")
    tokenizer.save_pretrained(out / "llm")
    return {
        **llm_report,
        "dialogues": len(dialogues),
        "vocab": len(tokenizer),
        "parameters": sum(p.numel() for p in llm.parameters()),
        "seconds": round(time.time() - t0, 1),
    }


AUDIO_VOCODER = ".audio-vocoder"
"""Where the second process leaves the sound decoder's vocoder (``out/.audio-vocoder``)."""


def train_vocoder_apart(out: Path, seed: int, budget: BuildBudget, log: Callable[[str], None] = print) -> dict:
    """Train the toy AudioLDM's vocoder on its own (it reads the world's mels, not captions) and
    write it to ``out/AUDIO_VOCODER``, for `_build_parts` to put into the sound decoder the
    building process trains; returns its report."""
    from nextgpt.plugins import load_plugins

    staging = out / ".untrained-vocoder"
    build_sound_pipeline(seed).save_pretrained(staging)
    decoder = load_plugins(allow=PLUGINS).decoder_backend("audio", DECODER_BACKENDS["audio"]).build(str(staging))
    report = train_sound_decoder(decoder, W.concepts("audio"), budget.audio_decoder, seed, log, parts=("vocoder",))
    decoder.pipeline.vocoder.save_pretrained(out / AUDIO_VOCODER)
    shutil.rmtree(staging)
    return report["vocoder"]


def _second_process(out: str, seed: int, budget: BuildBudget, threads: int) -> None:
    """`SecondProcess`'s work (as many torch threads as the parent), quietly: the sound
    decoder's vocoder (`train_vocoder_apart`), then `train_decoders` of
    `SECOND_PROCESS_DECODERS`; the result is written to ``out/.second-<pid>.json`` for the
    parent to read."""
    from toy_world.cli import _setup

    _setup()
    torch.set_num_threads(threads)
    quiet = lambda line: None  # noqa: E731
    vocoder = train_vocoder_apart(Path(out), seed, budget, quiet)
    result = train_decoders(Path(out), SECOND_PROCESS_DECODERS, seed, budget, quiet)
    (Path(out) / f".second-{os.getpid()}.json").write_text(json.dumps({**result, "audio_vocoder": vocoder}))


class SecondProcess:
    """The sound decoder's vocoder, then the image and video decoders, trained in a second
    (spawned) process, on the second CPU core, while the building process trains the LLM, the
    encoder, the stages (``meanwhile``) and the rest of the sound decoder: the two halves take
    about as long."""

    def __init__(self, out: Path, seed: int, budget: BuildBudget) -> None:
        import multiprocessing

        self.out = out
        self.process = multiprocessing.get_context("spawn").Process(
            target=_second_process, args=(str(out), seed, budget, torch.get_num_threads()), name="toy-build"
        )
        self.process.start()

    def result(self) -> dict[str, Any]:
        """Wait for the process; its `train_decoders` result with the vocoder's report under
        ``"audio_vocoder"`` (an error if it failed)."""
        self.process.join()
        answer = self.out / f".second-{self.process.pid}.json"
        if self.process.exitcode != 0 or not answer.is_file():
            code = self.process.exitcode
            raise RuntimeError(f"training the toy decoders in a second process failed (exit code {code})")
        result = json.loads(answer.read_text())
        answer.unlink()
        return result

    def stop(self) -> None:
        """End the process if it still runs (the build failed elsewhere)."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


def write_model(out: Path, arch: ToyArchitecture, sources: dict[str, str], seed: int) -> None:
    """``config.json`` and ``model.safetensors`` of the toy model (untrained projectors)."""
    from nextgpt.model import NextGPTModel
    from nextgpt.plugins import load_plugins

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = NextGPTModel(toy_config(out, arch, sources), load_plugins(allow=PLUGINS))
    model.save_pretrained(out)


def write_provisional(
    folder: Path, built: Path, arch: ToyArchitecture, seed: int, budget: BuildBudget, pipelines: dict[str, Any]
) -> Path:
    """Write into the new ``folder`` a toy model that differs from the finished one only in its
    decoders' VAEs and UNets (still random): ``built``'s LLM and encoder, each decoder's
    `text_ready_pipeline` (``pipelines`` gives those already made), the same untrained
    projectors. NExT-GPT's three stages read nothing else (the output projectors learn the
    decoders' caption embeddings, never what the decoders draw), so they train on it exactly as
    on the finished folder. Returns ``folder``."""
    folder.mkdir(parents=True)
    shutil.copytree(built / "llm", folder / "llm")
    shutil.copy2(built / "imagebind_toy.pth", folder / "imagebind_toy.pth")
    sources = {}
    for m in W.MODALITIES:
        pipeline = pipelines[m] if m in pipelines else text_ready_pipeline(m, seed, budget)[0]
        pipeline.save_pretrained(folder / "decoders" / DECODER_FOLDERS[m])
        sources[m] = str((folder / "decoders" / DECODER_FOLDERS[m]).resolve())
    write_model(folder, arch, sources, seed)
    return folder


def build_toy(
    out: str | Path,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    budget: BuildBudget | str = "full",
    arch: ToyArchitecture | None = None,
    log: Callable[[str], None] = print,
    cache: bool = True,
    overwrite: bool = False,
    meanwhile: Callable[[Path], None] | None = None,
) -> Path:
    """Build the toy model folder ``out`` (see the module docstring); returns it.

    A build is cached by content: under ``$NEXTGPT_HOME/toy-builds/<key>``, where the key
    digests this package's source, the arguments and the versions of torch, transformers and
    diffusers. A second build with the same key copies the cached folder (seconds).

    Args:
        out: the folder to write; it must not exist (or be empty) unless ``overwrite``.
        seed: the world's seed: which captions are held out (must match the world the model
            is trained and evaluated on, `toy_world.generate`'s ``seed`` and
            ``heldout_fraction``), and the seed of every pre-training run.
        heldout_fraction: as for `toy_world.generate`.
        budget: ``"full"``, ``"small"`` or a `BuildBudget`.
        arch: the sizes of the parts.
        cache: reuse (and fill) the build cache; False builds afresh and caches nothing.
        overwrite: replace an existing ``out``.
        meanwhile: called in this process with a provisional toy folder (`write_provisional`)
            as soon as the LLM, the encoder and the decoders' text encoders are trained, while
            the decoders' VAEs and UNets still train (in the second process, then here): all
            NExT-GPT's three stages read, so they can train meanwhile (`toy_world.learning`)
            on the same figures as on the finished folder. The folder is removed when the call
            returns: a model saved from it names its frozen parts there, and
            `toy_world.trained_toy.assemble` (``trained_from``) moves them to ``out``. With a
            cached build it is called with ``out`` itself, once written.
    """
    from nextgpt.paths import nextgpt_home

    out = Path(out)
    if (out.is_symlink() or out.exists()) and not overwrite:
        if not out.is_dir() or any(out.iterdir()):
            raise FileExistsError(f"{out}: exists; pass overwrite=True (build_toy.py --overwrite) to replace it")
    budget = BUDGETS[budget] if isinstance(budget, str) else budget
    arch = arch or ToyArchitecture()
    key = build_key(seed, heldout_fraction, budget, arch)
    entry = nextgpt_home() / "toy-builds" / key
    if cache and (entry / "build.json").is_file():
        log(f"toy model: the same build is cached in {entry}; copying it")
    else:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{key}.tmp-"))
        try:
            _build_into(staging, seed, heldout_fraction, budget, arch, log, meanwhile)
            if not cache:
                _replace(out, staging)
                return out
            try:
                os.rename(staging, entry)
            except OSError:  # another process cached the same build first
                if not (entry / "build.json").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        meanwhile = None  # (called on the provisional folder)
    _replace(out, entry, copy=True)
    if meanwhile is not None:
        meanwhile(out)
    return out


def build_key(seed: int, heldout_fraction: float, budget: BuildBudget, arch: ToyArchitecture) -> str:
    """The content key of a build: this package's source, the arguments, the library versions."""
    import diffusers
    import transformers

    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    settings = {
        "seed": seed,
        "heldout_fraction": heldout_fraction,
        "budget": asdict(budget),
        "arch": asdict(arch),
        "versions": [torch.__version__, transformers.__version__, diffusers.__version__],
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def _replace(out: Path, source: Path, copy: bool = False) -> None:
    """Put the folder ``source`` at ``out`` (copied, or moved), removing what ``out`` was."""
    if out.is_symlink() or out.is_file():
        out.unlink()
    elif out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copytree(source, out)
    else:
        shutil.move(str(source), out)


def _build_into(
    out: Path,
    seed: int,
    heldout_fraction: float,
    budget: BuildBudget,
    arch: ToyArchitecture,
    log: Callable[[str], None],
    meanwhile: Callable[[Path], None] | None = None,
) -> None:
    """Build the toy model into the (empty) folder ``out`` (``meanwhile``: as for `build_toy`)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    report: dict[str, Any] = {
        "seed": seed,
        "heldout_fraction": heldout_fraction,
        "budget": asdict(budget),
        "architecture": asdict(arch),
        "seconds": {},
    }
    # the sound decoder's vocoder and the picture decoders (image, then video started from it)
    # train in a second process while this one pre-trains the LLM and the encoder, runs
    # ``meanwhile`` and trains the rest of the sound decoder: two halves of about the same
    # length, one per CPU core
    background = None
    if budget.second_process:
        background = SecondProcess(out, seed, budget)
    try:
        _build_parts(out, seed, heldout_fraction, budget, arch, log, background, report, meanwhile)
    finally:
        if background is not None:
            background.stop()


def _build_parts(
    out: Path,
    seed: int,
    heldout_fraction: float,
    budget: BuildBudget,
    arch: ToyArchitecture,
    log: Callable[[str], None],
    background: SecondProcess | None,
    report: dict[str, Any],
    meanwhile: Callable[[Path], None] | None = None,
) -> None:
    """Steps 1 to 5 of `_build_into` (filling ``report``)."""
    from nextgpt.plugins import load_plugins

    splits = {m: W.split_concepts(m, seed, heldout_fraction) for m in W.MODALITIES}
    heldout = {m: splits[m][1] for m in W.MODALITIES}
    world = {m: W.concepts(m) for m in W.MODALITIES}
    started = time.time()

    # 1. the LLM: tokenizer and language model pre-trained on the world's text
    report["llm"] = build_llm(out, seed, arch, budget, log)
    report["seconds"]["llm"] = report["llm"]["seconds"]
    log(f"LLM: {report['llm']['parameters']} parameters, loss {report['llm']['final_loss']:.3f}")

    # 2. the encoder (its report reads attributes of fresh items, split by caption)
    t0 = time.time()
    train = {m: splits[m][0] for m in W.MODALITIES}
    imagebind, enc_report = pretrain_imagebind(world, {"train": train, "heldout": heldout}, budget, seed, log)
    torch.save(imagebind.state_dict(), out / "imagebind_toy.pth")
    report["encoder"] = enc_report
    report["seconds"]["encoder"] = round(time.time() - t0, 1)
    log(f"encoder: attributes read on held-out items: {_attributes(enc_report)} ({report['seconds']['encoder']}s)")

    # 3. the decoders' text encoders; with them, whatever should run ``meanwhile``
    t0 = time.time()
    registry = load_plugins(allow=PLUGINS)
    report["decoders"] = {}
    # why AudioLDM's text encoder is replaced: the tiny one cannot tell the sound captions apart
    tiny_audio = registry.decoder_backend("audio", DECODER_BACKENDS["audio"]).build("tiny")
    report["decoders"]["audio_tiny"] = caption_separation(tiny_audio, [c.caption for c in world["audio"]])
    text_ready = {"audio": text_ready_pipeline("audio", seed, budget, log)}
    if meanwhile is not None:
        provisional = write_provisional(
            out / ".provisional", out, arch, seed, budget, {"audio": text_ready["audio"][0]}
        )
        t1 = time.time()
        try:
            meanwhile(provisional)
        finally:
            shutil.rmtree(provisional)
        report["seconds"]["meanwhile"] = round(time.time() - t1, 1)

    # 4. the decoders (already started in a second process when the budget says so)
    if background is None:
        here = train_decoders(out, W.MODALITIES, seed, budget, log, text_ready)
    else:  # (the vocoder trains in the second process)
        here = train_decoders(out, HERE_DECODERS, seed, budget, log, text_ready, sound_parts=("vae", "unet"))
    sources = dict(here["sources"])
    report["decoders"].update(here["report"])
    if background is not None:
        there = background.result()
        sources.update(there["sources"])
        report["decoders"].update(there["report"])
        vocoder = Path(sources["audio"]) / "vocoder"
        shutil.rmtree(vocoder)
        (out / AUDIO_VOCODER).rename(vocoder)
        report["decoders"]["audio_training"]["vocoder"] = there["audio_vocoder"]
    for m in W.MODALITIES:
        decoder = registry.decoder_backend(m, DECODER_BACKENDS[m]).build(sources[m])
        report["decoders"][m] = caption_separation(decoder, [c.caption for c in world[m]])
        report["decoders"][f"{m}_heldout"] = caption_separation(decoder, [c.caption for c in heldout[m]])
    report["seconds"]["decoders"] = round(time.time() - t0 - report["seconds"].get("meanwhile", 0.0), 1)
    separation = ", ".join(
        f"{m} {report['decoders'][f'{m}_heldout']['min_over_median_distance']:.2f}" for m in W.MODALITIES
    )
    log(
        f"decoders: held-out caption embeddings apart (closest pair / median distance): {separation} "
        f"({report['seconds']['decoders']}s)"
    )

    # 5. the model folder and its demo script (`nextgpt demo --model <folder>`)
    write_model(out, arch, sources, seed)
    write_demo(out, heldout, seed)
    report["seconds"]["total"] = round(time.time() - started, 1)
    (out / "build.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"toy model built in {report['seconds']['total']}s")


def _attributes(encoder_report: dict[str, Any]) -> str:
    """``image colour 1.00 shape 0.91 ...; audio ...``: the held-out rows of the encoder's report."""
    parts = []
    for m in W.MODALITIES:
        scores = encoder_report.get(f"heldout_{m}", {})
        parts.append(f"{m} " + " ".join(f"{name} {value:.2f}" for name, value in scores.items()))
    return "; ".join(parts)
