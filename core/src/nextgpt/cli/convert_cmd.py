"""``nextgpt convert-legacy``: turn the released NExT-GPT checkpoint into a model folder."""

from __future__ import annotations

import argparse

from nextgpt.cli.options import add_replaced
from nextgpt.errors import ConfigError


def add(parser: argparse.ArgumentParser):
    parser.add_argument("checkpoint", help="the released pytorch_model.pt (7b_tiva_v0)")
    parser.add_argument("directory", metavar="DIRECTORY", help="the model folder to write")
    parser.add_argument("--vicuna", required=True, help="folder of Vicuna-7B v0 (LLaMA-7B + the v0 delta)")
    parser.add_argument("--imagebind", required=True, help="imagebind_huge.pth (or 'imagebind_huge')")
    add_replaced(parser, "--out", "the model folder to write is now the second argument (CHECKPOINT DIRECTORY)")
    parser.add_argument("--merge-lora", action="store_true", help="fold LoRA into the LLM (writes DIRECTORY/llm)")
    parser.add_argument("--dtype", choices=["float16", "float32", "bfloat16"], default=None, help="default: keep")
    parser.add_argument(
        "--decoder", action="append", default=[], metavar="MODALITY=SOURCE", help="override a decoder's weights"
    )
    parser.add_argument("--overwrite", action="store_true", help="write into DIRECTORY even if it already holds files")
    return run


def run(args: argparse.Namespace) -> int:
    from nextgpt.legacy.convert import convert_legacy

    decoders = {}
    for item in args.decoder:
        modality, sep, source = item.partition("=")
        if not sep:
            raise ConfigError(f"--decoder {item!r}: expected MODALITY=SOURCE")
        decoders[modality] = source
    out = convert_legacy(
        args.checkpoint,
        args.vicuna,
        args.imagebind,
        args.directory,
        args.merge_lora,
        args.dtype,
        decoders,
        overwrite=args.overwrite,
    )
    print(f"wrote {out}; load it with NextGPTModel.from_pretrained({str(out)!r}) or `nextgpt chat --model {out}`")
    return 0
