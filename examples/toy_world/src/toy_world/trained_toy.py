"""The trained `toy` model: the toy base (`toy_world.build`) taken through NExT-GPT's three stages
on a freshly generated toy world, so that ``nextgpt demo --model toy`` and ``nextgpt chat
--model toy`` answer held-out requests with the right picture, sound and video.

The stages see only the world's train split (`toy_world.learning.run_learning`, the learning
benchmark's budgets, measurements skipped). The folder written stands alone: the base's frozen
parts and demo script are copied in and ``config.json`` names them inside the folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toy_world.build import _replace
from toy_world.settings import WORLD_SIZES


def train_toy(
    base: str | Path,
    out: str | Path,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    budget: str = "full",
    log: Callable[[str], None] = print,
    overwrite: bool = False,
) -> Path:
    """Train the toy base folder ``base`` through stages 1 -> 2 -> 3 and write the result to ``out``.

    Args:
        base: a folder written by `toy_world.build.build_toy` (with the same ``seed`` and
            ``heldout_fraction``).
        out: the folder to write; it must not exist unless ``overwrite``.
        seed, heldout_fraction: the world's, as for `toy_world.generate`.
        budget: ``"full"`` or ``"small"``: the world's size and the stages' steps.
    """
    from toy_world.generate import generate
    from toy_world.learning import run_learning

    base, out = Path(base).resolve(), Path(out)
    if (out.is_symlink() or out.exists()) and not overwrite:
        raise FileExistsError(f"{out}: exists; pass overwrite=True (build_toy.py --overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.tmp-", dir=out.parent) as scratch:
        scratch = Path(scratch)
        generate(scratch / "world", seed=seed, heldout_fraction=heldout_fraction, **WORLD_SIZES[budget])
        run_learning(base, scratch / "world", scratch / "stages", budget=budget, log=log, measure=False)
        assemble(base, scratch / "stages" / "stage3", scratch / "model")
        _replace(out, scratch / "model")
    log(f"trained toy model written to {out}")
    return out


def assemble(base: Path, stage3: Path, out: Path) -> Path:
    """Write into the new folder ``out`` a model that stands alone: ``base``'s frozen parts and
    demo script with the trained parts and ``config.json`` of ``stage3`` (a folder saved from a
    model loaded from ``base``), the config's paths into ``base`` made relative to ``out``."""
    base = Path(base).resolve()
    shutil.copytree(base, out)
    for item in Path(stage3).iterdir():
        if item.is_file():
            shutil.copy2(item, out / item.name)
    config_file = out / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(_inside(config, str(base)), indent=2) + "\n")
    return out


def _inside(value: Any, base: str) -> Any:
    """``value`` (parsed JSON) with every path into the folder ``base``, in keys and values (the
    licence records name their parts by path), made ``./``-relative."""
    if isinstance(value, dict):
        return {_inside(k, base): _inside(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_inside(v, base) for v in value]
    if isinstance(value, str):
        return "./" if value == base else value.replace(base + "/", "./")
    return value
