"""``nextgpt demo``: an offline, scripted any-to-any conversation (with the tiny preset unless
``--model`` names another model; ``--config``/``--set`` change its configuration).

Every installed modality with an example takes part: each turn hands the model one modality's
example file and asks for the next modality; the last turn asks for all of them at once. The
tiny preset has random weights, so the text is gibberish and the media are noise: the demo shows
the whole path (files in, encoders, LLM, signal tokens, projectors, decoders, files out) working.
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
from nextgpt.tables import format_table

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
    examples = {}
    for name in modalities:  # numbered names: an earlier demo's files (or a user's) are never replaced
        examples[name] = model.save_output(name, model.specs[name].example(), inputs_dir, f"example_{name}")

    session = ChatSession(model, out, seed=args.seed)
    rows = []
    for number, (inputs, wanted, text) in enumerate(script(modalities), start=1):
        began = time.perf_counter()
        output = session.ask(text, [(m, str(examples[m])) for m in inputs], wanted)
        seconds = time.perf_counter() - began
        rows.append(
            (
                str(number),
                ", ".join(["text", *inputs]),
                ", ".join(["text", *(f"{m.modality} ({m.path.name})" for m in output.media if m.path)]),
                f"{seconds:.1f}",
            )
        )
    print()
    print(format_table(("turn", "inputs", "outputs", "seconds"), rows))
    files = sorted(p for p in out.iterdir() if p.is_file())
    print(f"\n{len(files)} files written under {out}/ (inputs under {inputs_dir}/)")
    print(f"total {time.perf_counter() - start:.1f} s")
    for note in notes:
        print(note)
    return 0
