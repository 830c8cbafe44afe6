"""``nextgpt export CKPT DIR``: write a training checkpoint as a model folder that
``NextGPTModel.from_pretrained(DIR)`` (and ``nextgpt chat --model DIR``) loads."""

from __future__ import annotations

import argparse

from nextgpt.cli.options import MODEL_HELP


def add(parser: argparse.ArgumentParser):
    parser.add_argument("checkpoint", help="a .ckpt written by nextgpt fit")
    parser.add_argument(
        "directory", metavar="DIRECTORY", help="the model folder to write (config.json + model.safetensors)"
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="build the checkpoint's frozen parts from this model instead of the one it names (e.g. when that "
        f"folder moved): {MODEL_HELP}",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="write into DIRECTORY even if it already holds files (replacing them)"
    )
    return run


def run(args: argparse.Namespace) -> int:
    from nextgpt.extras import require_extra

    require_extra("train", "nextgpt export")
    from nextgpt.training.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.directory, model=args.model, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0
