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
    build_base: bool = False,
) -> Path:
    """Train the toy base folder ``base`` through stages 1 -> 2 -> 3 and write the result to ``out``.

    Args:
        base: a folder written by `toy_world.build.build_toy` (with the same ``seed`` and
            ``heldout_fraction``), or with ``build_base`` the folder to build it into.
        out: the folder to write; it must not exist unless ``overwrite``.
        seed, heldout_fraction: the world's, as for `toy_world.generate`.
        budget: ``"full"`` or ``"small"``: the base's pre-training, the world's size and the
            stages' steps.
        overwrite: replace existing folders.
        build_base: `build_toy` the base first, the three stages training while its decoders do
            (``build_toy``'s ``meanwhile``): minutes sooner than one after the other, and the
            same model.
    """
    from toy_world.build import build_toy
    from toy_world.generate import generate
    from toy_world.learning import run_learning

    base, out = Path(base), Path(out)
    for folder in (base, out) if build_base else (out,):
        if (folder.is_symlink() or folder.exists()) and not overwrite:
            raise FileExistsError(f"{folder}: exists; pass overwrite=True (build_toy.py --overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.tmp-", dir=out.parent) as scratch:
        scratch = Path(scratch)
        generate(scratch / "world", seed=seed, heldout_fraction=heldout_fraction, **WORLD_SIZES[budget])
        trained_from: list[Path] = []

        def stages(folder: Path) -> None:
            trained_from.append(folder.resolve())
            run_learning(trained_from[0], scratch / "world", scratch / "stages", budget=budget, log=log, measure=False)

        if build_base:
            build_toy(base, seed, heldout_fraction, budget, log=log, overwrite=overwrite, meanwhile=stages)
        else:
            stages(base)
        assemble(base, scratch / "stages" / "stage3", scratch / "model", trained_from=trained_from[0])
        _replace(out, scratch / "model")
    log(f"trained toy model written to {out}")
    return out


def assemble(base: Path, stage3: Path, out: Path, trained_from: Path | None = None) -> Path:
    """Write into the new folder ``out`` a model that stands alone: ``base``'s frozen parts and
    demo script with the trained parts and ``config.json`` of ``stage3`` (a folder saved from a
    model loaded from ``base``, or from ``trained_from``: the provisional folder `build_toy`
    handed its ``meanwhile``, whose frozen parts the stages read as ``base``'s), the config's
    paths into that folder made relative to ``out``."""
    base = Path(base).resolve()
    shutil.copytree(base, out)
    for item in Path(stage3).iterdir():
        if item.is_file():
            shutil.copy2(item, out / item.name)
    move_parts(out, Path(trained_from).resolve() if trained_from is not None else base, "./")
    return out


def move_parts(folder: Path, old: Path, new: str) -> None:
    """Rewrite ``folder/config.json`` so that every path into the folder ``old``, in keys and
    values (the licence records name their parts by path), points into ``new`` instead
    (``"./"``: inside ``folder`` itself)."""
    config_file = Path(folder) / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(_moved(config, str(old), new), indent=2) + "\n")


def _moved(value: Any, old: str, new: str) -> Any:
    """``value`` (parsed JSON) with every path into the folder ``old`` moved into ``new``."""
    if isinstance(value, dict):
        return {_moved(k, old, new): _moved(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, old, new) for v in value]
    if isinstance(value, str):
        return new if value == old else value.replace(old + "/", new if new.endswith("/") else new + "/")
    return value
