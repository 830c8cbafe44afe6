"""The toolkit at real size on a GPU, each figure beside the plain-library one from the same run.

On a GPU it builds the 7B-shaped system from configs with random weights (no downloads): a
Vicuna-7B-shaped LLaMA and a Stable-Diffusion-1.5-shaped pipeline, written once as ordinary
``save_pretrained`` folders and loaded through ``llm.source`` / the image decoder's ``source``
(the image encoder stays the tiny one: frozen encoders are not what is timed here). ``--tiny``
runs the same code on the tiny preset, on whatever device there is (the test suite runs it on
a CPU and checks that every row is produced).

Rows (toolkit | plain library):

* greedy decode tokens/s, multimodal prefix, signal states kept: `nextgpt.decoding` | HF
  ``generate``; then both with the static KV cache (``llm.cache: static`` |
  ``cache_implementation="static"``);
* a warm text->image turn (LLM + output projector + diffusion steps + VAE) | the stock diffusers
  pipeline call alone, on the same condition;
* a stage-3 LoRA training step in tokens/s: plain loop (peft LoRA, fwd + bwd + AdamW on
  ``inputs_embeds``), and with Liger kernels (GPU only);
* parameter memory per component in bf16 (measured from the loaded weights), the LLM in 4-bit
  (computed: 0.5 byte per linear weight plus one fp16 scale per 64), and the peak GPU memory of
  decode and of the turn.

A row that cannot run here says why instead of a figure.

Usage: python benchmarks/gpu_check.py [--tiny] [--tokens N] [--json PATH] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROWS = (
    "decode tok/s (signal capture | HF generate)",
    "decode tok/s, static cache (signal capture | HF generate)",
    "text->image turn s (toolkit turn | stock pipeline call)",
    "stage-3 LoRA step tok/s (plain loop | with Liger)",
    "memory GB: LLM as loaded (bf16; tiny: fp32) | LLM 4-bit (computed)",
    "memory GB: encoders + projectors",
    "memory GB: image decoder (UNet + VAE + text encoder)",
    "peak GPU memory GB (decode | turn)",
)


@dataclass
class Row:
    name: str
    toolkit: float | str
    plain: float | str

    def cells(self) -> tuple[str, str]:
        return tuple(f"{v:,.3f}" if isinstance(v, float) else v for v in (self.toolkit, self.plain))  # type: ignore[return-value]


def synced(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


REPEATS = {"warm": 1, "reps": 3}
"""Calls per timing: one warm-up, the median of three (`run` lowers them for ``--tiny``)."""


def median_seconds(fn: Callable[[], Any], device: torch.device) -> float:
    warm, reps = REPEATS["warm"], REPEATS["reps"]
    for _ in range(warm):
        fn()
    synced(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        synced(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gigabytes(module: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2**30


def write_real_size_folders(work: Path) -> tuple[Path, Path]:
    """A Vicuna-7B-shaped LLaMA and an SD-1.5-shaped pipeline with random weights, as folders
    (written once; the tokenizers are the tiny ones: their size does not change the cost)."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from nextgpt.decoders import ddim_scheduler
    from nextgpt.tiny.llm import build_tiny_tokenizer
    from nextgpt.tiny.text_encoders import tiny_clip_text_encoder
    from nextgpt.tiny.tokenizers import build_clip_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    llm_dir, sd_dir = work / "llm-7b-random", work / "sd15-random"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not (llm_dir / "config.json").exists():
        config = LlamaConfig(
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=32000,
            max_position_embeddings=2048,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=2,
        )
        with torch.device(device):
            LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(llm_dir)
        build_tiny_tokenizer().save_pretrained(llm_dir)
    if not (sd_dir / "model_index.json").exists():
        tokenizer = build_clip_tokenizer()
        unet = UNet2DConditionModel(
            sample_size=64,
            cross_attention_dim=768,
            attention_head_dim=8,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=512,
        )
        text = tiny_clip_text_encoder(
            tokenizer, 768, 3072, num_hidden_layers=12, num_attention_heads=12, vocab_size=49408
        )
        StableDiffusionPipeline(
            vae=vae,
            text_encoder=text,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=ddim_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        ).to(torch.bfloat16).save_pretrained(sd_dir)
    return llm_dir, sd_dir


def build_system(tiny: bool, work: Path, device: torch.device) -> Any:
    from nextgpt.model import NextGPTModel

    if tiny:
        model = NextGPTModel.from_pretrained("tiny", modalities=["image"])
    else:
        llm_dir, sd_dir = write_real_size_folders(work)
        model = NextGPTModel.from_pretrained(
            "tiny",
            modalities=["image"],
            overrides={"llm.source": str(llm_dir), "llm.dtype": "bfloat16", "llm.max_new_tokens": 128},
            decoders={"image": {"backend": "stable-diffusion", "source": str(sd_dir)}},
        )
    dtype = torch.float32 if tiny else torch.bfloat16
    model.to(device=device, dtype=dtype)
    for decoder in model.decoders.values():
        decoder.to(device, dtype)
    return model


def decode_rows(model: Any, tokens: int, device: torch.device) -> tuple[list[Row], float | str]:
    """Greedy decode with a multimodal prefix: the toolkit (states kept) against HF generate."""
    from nextgpt.decoding import decode, states_of
    from PIL import Image

    image = Image.new("RGB", (32, 32), (200, 30, 30))
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "draw it again"}]}
    ]
    try:
        packed, _ = model._prompt(messages, tokens)
    except Exception:  # a plugin that takes no in-memory image: text only
        packed, _ = model._prompt([{"role": "user", "content": [{"type": "text", "text": "draw it"}]}], tokens)
    prompt = packed.embeds
    eos = model.tokenizer.eos_token_id
    options = {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False, "pad_token_id": eos}
    pad = torch.zeros_like(prompt[0])
    mask = torch.ones(1, prompt.shape[0], dtype=torch.long, device=device)
    rows = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for label, kind, plain_extra in ((ROWS[0], "dynamic", {}), (ROWS[1], "static", {"cache_implementation": "static"})):

        def toolkit(kind: str = kind) -> None:
            decoded = decode(model.llm, [prompt], pad, kind, 0, **options)
            states_of(model.llm, decoded, [decoded.new_ids[0]], eos)

        def plain(extra: dict[str, Any] = plain_extra) -> None:
            model.llm.generate(inputs_embeds=prompt[None], attention_mask=mask, **options, **extra)

        with torch.no_grad():
            ours = median_seconds(toolkit, device)
            theirs = median_seconds(plain, device)
        rows.append(Row(label, tokens / ours, tokens / theirs))
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else "n/a (no GPU)"
    return rows, peak


def turn_row(model: Any, steps: int, device: torch.device) -> tuple[Row, float | str]:
    """A warm text->image turn against the stock pipeline call alone on the same condition."""
    decoder = model.decoders["image"]
    messages = [{"role": "user", "content": [{"type": "text", "text": "a red circle"}]}]
    decode_options = {"image": {"steps": steps}}

    def turn() -> None:
        model.generate(messages, request=["image"], max_new_tokens=1, decode=decode_options, progress=False)

    options = model._decode_options("image", decode_options["image"], None)
    condition = decoder.condition_from_text(["a red circle"])
    kwargs = decoder._pipeline_kwargs(condition.to(device), decoder.negative_condition())
    kwargs.update(decoder._call_options(options))

    def stock() -> None:
        decoder.pipeline(
            num_inference_steps=steps,
            guidance_scale=options.guidance,
            generator=torch.Generator(device).manual_seed(0),
            **kwargs,
        )

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        ours = median_seconds(turn, device)
        theirs = median_seconds(stock, device)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else "n/a (no GPU)"
    return Row(ROWS[2], ours, theirs), peak


def training_row(model: Any, tiny: bool, device: torch.device) -> Row:
    """A plain LoRA step (fwd + bwd + AdamW on ``inputs_embeds``) in tokens/s, and with Liger, on
    a fresh random LLM of the system's LLM config (the system itself is left as it is)."""
    import peft
    from nextgpt.llm import base_model
    from transformers import AutoModelForCausalLM

    batch, length = (2, 64) if tiny else (4, 1024)
    config = base_model(model.llm).config
    with torch.device(device):
        llm = AutoModelForCausalLM.from_config(config).to(model.llm.dtype)
    lora = peft.LoraConfig(r=32, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    trainee = peft.get_peft_model(llm, lora)
    trainable = [p for p in trainee.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    ids = torch.randint(0, int(config.vocab_size), (batch, length), device=device)

    def step() -> None:
        out = trainee(inputs_embeds=trainee.get_input_embeddings()(ids), labels=ids)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    trainee.train()
    plain = batch * length / median_seconds(step, device)
    liger: float | str
    if device.type != "cuda":
        liger = "n/a (Liger kernels need a GPU)"
    else:
        try:
            from liger_kernel.transformers import apply_liger_kernel_to_llama

            apply_liger_kernel_to_llama(model=llm)
            liger = batch * length / median_seconds(step, device)
        except ImportError:
            liger = "n/a (liger-kernel not installed)"
    return Row(ROWS[3], plain, liger)


def memory_rows(model: Any) -> list[Row]:
    llm = model.llm
    linear = sum(m.weight.numel() for m in llm.modules() if isinstance(m, torch.nn.Linear))
    other = sum(p.numel() for p in llm.parameters()) - linear
    four_bit = (linear * (0.5 + 2 / 64) + other * 2) / 2**30
    frozen = sum(gigabytes(m) for m in model.encoders.values()) + gigabytes(model.input_projectors)
    frozen += gigabytes(model.output_projectors)
    pipeline = model.decoders["image"].pipeline
    decoder = sum(gigabytes(pipeline.components[k]) for k in ("unet", "vae", "text_encoder"))
    return [Row(ROWS[4], gigabytes(llm), four_bit), Row(ROWS[5], frozen, "-"), Row(ROWS[6], decoder, "-")]


def run(tiny: bool, tokens: int, work: Path, model: Any = None) -> list[Row]:
    """Every row; ``model``: an already built system to measure instead of building one."""
    from nextgpt.progress import set_progress

    set_progress(False)
    if tiny:  # checks that every row runs; its timings mean little
        REPEATS.update(warm=0, reps=1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model or build_system(tiny, work, device)
    rows, decode_peak = decode_rows(model, tokens, device)
    turn, turn_peak = turn_row(model, 2 if tiny else 50, device)
    rows.append(turn)
    rows.append(training_row(model, tiny, device))
    rows.extend(memory_rows(model))
    rows.append(Row(ROWS[7], decode_peak, turn_peak))
    return rows


def main(argv: list[str] | None = None, model: Any = None) -> int:
    """The command; ``model``: an already built system (the test suite passes its tiny one)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny preset instead of the 7B-shaped system")
    parser.add_argument("--tokens", type=int, default=None, help="greedy tokens per decode (default 128; tiny 16)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--work", type=Path, default=None, help="where the random real-size folders are written")
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        print("gpu_check: no GPU here; run with --tiny to check the script on a CPU", file=sys.stderr)
        return 2
    from nextgpt.paths import nextgpt_home

    work = args.work or nextgpt_home() / "gpu_check"
    tokens = args.tokens or (16 if args.tiny else 128)
    rows = run(args.tiny, tokens, work, model)
    width = max(len(r.name) for r in rows)
    print(f"{'row':{width}}  {'toolkit':>14}  {'plain / other':>32}")
    for row in rows:
        ours, theirs = row.cells()
        print(f"{row.name:{width}}  {ours:>14}  {theirs:>32}")
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
