"""The memory plan of the 7B system (Vicuna-7B, ImageBind-huge, SD-1.5, zeroscope-576w) computed
on meta tensors from the published architectures, with no weights and no download: the table
of the README's "Running on a GPU".

The LLM's and the decoders' configurations are written into a temporary folder from the
architectures (Vicuna-7B is LLaMA-7B's shape; SD-1.5's UNet is diffusers'
``UNet2DConditionModel`` defaults (cross-attention 768) with CLIP ViT-L/14's text tower; zeroscope-576w's is the
``UNet3DConditionModel`` with OpenCLIP ViT-H/14's text tower), so the figures are those of
`nextgpt.memory.memory_plan` for the real system; the AudioLDM decoder is left out (its
configuration is not at hand offline). Weights only: activations, the KV cache and the CUDA
context come on top.

    python benchmarks/memory_plan_7b.py            # tables for bf16, 8-bit, 4-bit and offload
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
from nextgpt.memory import GIB, MemoryPlan, memory_plan
from nextgpt.overrides import Overrides, planned_config
from nextgpt.plugins import load_plugins

VICUNA_7B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 2048,
    "vocab_size": 32000,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
CLIP_L14_TEXT = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "projection_dim": 768,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}
OPENCLIP_H14_TEXT = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "projection_dim": 1024,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
}
SD_VAE = {
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
    "sample_size": 512,
}


def write_pipeline(folder: Path, pipeline: str, unet_class: str, unet: dict, text: dict) -> Path:
    """A pipeline folder with configs only: what `Decoder.parameter_counts` reads."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet3DConditionModel
    from transformers import CLIPTextConfig

    unet_model = {"UNet2DConditionModel": UNet2DConditionModel, "UNet3DConditionModel": UNet3DConditionModel}
    index = {
        "_class_name": pipeline,
        "unet": ["diffusers", unet_class],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(index))
    for name, cls, config in (("unet", unet_model[unet_class], unet), ("vae", AutoencoderKL, SD_VAE)):
        (folder / name).mkdir()
        (folder / name / "config.json").write_text(json.dumps({"_class_name": cls.__name__, **config}))
    CLIPTextConfig(**text).save_pretrained(folder / "text_encoder")
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    return folder


def plans(root: Path) -> dict[str, MemoryPlan]:
    """The plans of the 7B system on a GPU: bf16; LLM in 8 and 4 bits; 4 bits and decoders offloaded."""
    llm = root / "vicuna-7b"
    llm.mkdir()
    (llm / "config.json").write_text(json.dumps(VICUNA_7B))
    image_unet = {"cross_attention_dim": 768}
    sd = write_pipeline(root / "sd15", "StableDiffusionPipeline", "UNet2DConditionModel", image_unet, CLIP_L14_TEXT)
    video_unet = {"cross_attention_dim": 1024, "attention_head_dim": 64}
    zs = write_pipeline(
        root / "zeroscope", "TextToVideoSDPipeline", "UNet3DConditionModel", video_unet, OPENCLIP_H14_TEXT
    )
    os.environ["NEXTGPT_VICUNA_7B_V0"] = str(llm)
    registry = load_plugins(allow=["image", "audio", "video"])
    base = [f"modalities.image.decoder.source={sd}", f"modalities.video.decoder.source={zs}"]
    offload = ["modalities.image.decoder.options.offload=model", "modalities.video.decoder.options.offload=model"]
    settings = {
        "bf16": base,
        "8-bit LLM": [*base, "llm.quantization=8"],
        "4-bit LLM": [*base, "llm.quantization=4"],
        "4-bit LLM, decoders offloaded": [*base, *offload, "llm.quantization=4"],
    }
    cuda = torch.device("cuda", 0)
    return {
        name: memory_plan(
            planned_config("nextgpt-7b-v0", Overrides.of(values), registry, ["image", "video"]),
            registry,
            device=cuda,
            torch_dtype=torch.bfloat16,
        )
        for name, values in settings.items()
    }


def summary(results: dict[str, MemoryPlan]) -> str:
    """One row per setting: GiB on the GPU and in CPU memory."""
    lines = ["| setting | GPU (GiB) | CPU (GiB) |", "|---|---|---|"]
    for name, plan in results.items():
        totals = plan.totals()
        lines.append(f"| {name} | {totals.get('cuda:0', 0) / GIB:.1f} | {totals.get('cpu', 0) / GIB:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = plans(Path(tmp))
    print(results["bf16"].table(), end="\n\n")
    print(summary(results))


if __name__ == "__main__":
    main()
