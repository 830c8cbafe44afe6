"""``nextgpt demo``: an offline, scripted any-to-any conversation (with the tiny preset unless
``--model`` names another model; ``--config``/``--set`` change its configuration).

Every installed modality with an example takes part: each turn hands the model one modality's
example file and asks for the next modality; the last turn asks for all of them at once. The
tiny preset has random weights, so the text is gibberish and the media are noise: the demo shows
the whole path (files in, encoders, LLM, signal tokens, projectors, decoders, files out) working.

A model folder may carry its own script, ``demo.json``: a list of turns
``{"text": ..., "inputs": [{"type": <modality>, "path": <file relative to the folder>}],
"request": [<modalities the answer must hold>]}``, played instead of the generic one (a trained
model shows what it learned, e.g. the toy world's model).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nextgpt.cli.chat_cmd import ChatSession
from nextgpt.cli.options import (
    add_model_arguments,
    add_out_argument,
    add_placement_arguments,
    add_runtime_arguments,
    add_seed_argument,
    load_model_from_args,
    memory_plan_requested,
)
from nextgpt.config import StrictModel, validate_model
from nextgpt.errors import ConfigError
from nextgpt.tables import format_table

DEMO_FILE = "demo.json"
"""A model folder's own demo script (see the module docstring)."""


class DemoInput(StrictModel):
    """A media file handed to the model in a demo turn."""

    type: str
    """The modality."""
    path: str
    """The file, relative to the model folder."""


class DemoTurn(StrictModel):
    """One user turn of a model folder's demo script."""

    text: str
    inputs: list[DemoInput] = []
    request: list[str] = []
    """Modalities the answer must hold (their signal tokens are appended if the LLM omits them)."""


RANDOM_WEIGHTS_NOTE = (
    "NOTE: the 'tiny' preset has RANDOM weights (tiny LLaMA, ImageBind and diffusion decoders built "
    "offline from configs). Its text is gibberish and its media are noise; the signal tokens are "
    "requested explicitly. It shows the pipeline working end to end, not model quality."
)


def add(parser: argparse.ArgumentParser):
    add_model_arguments(parser)
    add_out_argument(parser, "outputs/demo", "example inputs and generated media")
    add_seed_argument(parser)
    add_placement_arguments(parser)
    add_runtime_arguments(parser)
    return run


def script(modalities: list[str]) -> list[tuple[list[str], list[str], str]]:
    """(input modalities, requested output modalities, text) for each turn."""
    turns = []
    for i, source in enumerate(modalities):
        target = modalities[(i + 1) % len(modalities)]
        turns.append(([source], [target], f"Here is a {source}. Answer with a {target} that fits it."))
    if len(modalities) > 1:
        turns.append(([], list(modalities), "Now give me all of them at once: " + ", ".join(modalities) + "."))
    return turns


def folder_script(model_name: str, known: set[str]) -> list[tuple[list[tuple[str, str]], list[str], str]] | None:
    """The turns of ``demo.json`` in the model folder ``model_name`` names (a path or a named
    local model), as ``(attachments, requested modalities, text)``; None without one.

    Raises:
        ConfigError: the file is not a list of turns, or a turn names a modality outside ``known``
            or a missing file (one line, naming the file and the turn).
    """
    import json

    from nextgpt.paths import models_dir

    candidates = [Path(model_name).expanduser(), models_dir() / model_name]
    folder = next((c for c in candidates if (c / DEMO_FILE).is_file()), None)
    if folder is None:
        return None
    path = folder / DEMO_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: expected a list of turns, got {type(raw).__name__}")
    turns = []
    for number, item in enumerate(raw, start=1):
        turn = validate_model(DemoTurn, item, f"{path}, turn {number}")
        for modality in [i.type for i in turn.inputs] + turn.request:
            if modality not in known:
                raise ConfigError(f"{path}, turn {number}: modality {modality!r} is not one of {sorted(known)}")
        attachments = []
        for media in turn.inputs:
            file = folder / media.path
            if not file.is_file():
                raise ConfigError(f"{path}, turn {number}: input file {media.path!r} not found in {folder}")
            attachments.append((media.type, str(file)))
        turns.append((attachments, list(turn.request), turn.text))
    return turns


def run(args: argparse.Namespace) -> int:
    from nextgpt.files import check_writable_folder

    out = Path(args.out)
    check_writable_folder(out, "--out folder")
    if memory_plan_requested(args):
        return 0
    start = time.perf_counter()
    model = load_model_from_args(args)
    modalities = [n for n, s in model.specs.items() if s.example is not None and n in model.decoders]
    if not modalities:
        print("no modality plugins with decoders are installed; try `pip install nextgpt-image`")
        return 1
    built = "the tiny preset" if args.model == "tiny" else repr(args.model)
    print(f"built {built} in {time.perf_counter() - start:.1f} s: modalities {', '.join(modalities)}")
    notes = [RANDOM_WEIGHTS_NOTE] if args.model == "tiny" else []
    for note in notes:
        print(note)

    inputs_dir = out / "inputs"
    turns = folder_script(args.model, set(modalities))
    own = turns is not None
    if turns is None:
        examples = {}
        for name in modalities:  # numbered names: an earlier demo's files (or a user's) are never replaced
            examples[name] = model.save_output(name, model.specs[name].example(), inputs_dir, f"example_{name}")
        turns = [([(m, str(examples[m])) for m in inputs], wanted, text) for inputs, wanted, text in script(modalities)]
    else:
        print(f"playing the model's own {DEMO_FILE} ({len(turns)} turns)")

    session = ChatSession(model, out, seed=args.seed)
    rows = []
    for number, (attachments, wanted, text) in enumerate(turns, start=1):
        began = time.perf_counter()
        output = session.ask(text, attachments, wanted)
        seconds = time.perf_counter() - began
        if own:
            print(f"turn {number}: {text}\n  -> {output.text}")
        rows.append(
            (
                str(number),
                ", ".join(["text", *(m for m, _ in attachments)]),
                ", ".join(["text", *(f"{m.modality} ({m.path.name})" for m in output.media if m.path)]),
                f"{seconds:.1f}",
            )
        )
    print()
    print(format_table(("turn", "inputs", "outputs", "seconds"), rows))
    files = sorted(p for p in out.iterdir() if p.is_file())
    where = "inputs from the model folder" if own else f"inputs under {inputs_dir}/"
    print(f"\n{len(files)} files written under {out}/ ({where})")
    print(f"total {time.perf_counter() - start:.1f} s")
    for note in notes:
        print(note)
    return 0
