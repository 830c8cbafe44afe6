"""Command lines: ``toy-world-generate`` (or ``generate_world.py``) and ``toy-world-build`` (or
``build_toy.py``)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path


def _setup() -> None:
    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(int(os.environ.get("TOY_WORLD_THREADS", "1")))


def generate_main(argv: list[str] | None = None) -> int:
    """Write the toy world (media and JSON data files) into ``--root``."""
    from toy_world.generate import generate

    parser = argparse.ArgumentParser(prog="toy-world-generate", description=generate_main.__doc__)
    parser.add_argument("--root", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-per-modality", type=int, default=120, help="train pair items per modality")
    parser.add_argument("--n-heldout-per-modality", type=int, default=24)
    parser.add_argument("--heldout-fraction", type=float, default=0.2, help="share of captions held out")
    parser.add_argument("--n-mosit", type=int, default=180, help="train MosIT dialogues")
    args = parser.parse_args(argv)
    _setup()
    meta = generate(
        args.root,
        seed=args.seed,
        n_per_modality=args.n_per_modality,
        n_heldout_per_modality=args.n_heldout_per_modality,
        heldout_fraction=args.heldout_fraction,
        n_mosit=args.n_mosit,
    )
    for split, files in meta["files"].items():
        print(f"{split}: " + ", ".join(str(args.root / f) for f in files.values()))
    return 0


def build_main(argv: list[str] | None = None) -> int:
    """Build the toy models: the base (a world-trained tiny LLM, encoder and decoders, untrained
    projectors) and, from it, the trained model (the three NExT-GPT stages run on the toy world)."""
    from toy_world.build import BUDGETS, build_toy
    from toy_world.trained_toy import train_toy

    parser = argparse.ArgumentParser(prog="toy-world-build", description=build_main.__doc__)
    parser.add_argument(
        "--out",
        type=Path,
        help="the trained model folder to write; the base goes beside it as <out>-base "
        "(default: the named models `toy` and `toy-base` in NEXTGPT_HOME/models)",
    )
    parser.add_argument("--base-only", action="store_true", help="build the base only (skip the three stages)")
    parser.add_argument("--seed", type=int, default=0, help="the world's seed (which captions are held out)")
    parser.add_argument("--heldout-fraction", type=float, default=0.2)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="full", help="pre-training and training steps")
    parser.add_argument("--overwrite", action="store_true", help="replace existing model folders")
    args = parser.parse_args(argv)
    _setup()
    from nextgpt.paths import models_dir

    out = args.out or models_dir() / "toy"
    base = out.with_name(f"{out.name}-base")
    targets = [base] if args.base_only else [base, out]
    taken = [str(t) for t in targets if t.exists() or t.is_symlink()]
    if taken and not args.overwrite:
        print(f"toy-world-build: {', '.join(taken)} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    common = {"seed": args.seed, "heldout_fraction": args.heldout_fraction, "budget": args.budget}
    if args.base_only:
        build_toy(base, **common, overwrite=args.overwrite)
    else:  # the three stages train while the base's decoders do
        train_toy(base, out, **common, overwrite=args.overwrite, build_base=True)
    written = targets
    for folder in written:
        name = folder.name if args.out is None else str(folder)
        print(f"load it with NextGPTModel.from_pretrained({name!r}), or `nextgpt chat --model {name}`")
    return 0
