"""``nextgpt chat``: talk to a model; one-shot with ``-p``, interactive otherwise.

Interactive commands: ``/<modality> PATH`` attaches a file to the next message (e.g.
``/image cat.png``), ``/want <modality>`` asks for that modality in the next answer, ``/reset``
clears the history and what is pending, ``/help`` lists them, ``/quit`` leaves. Each command is
checked when typed (an unknown one gets a "did you mean"); a bad file or an unknown modality is
reported and the conversation goes on with its history kept. ``--want``, the attached files and
the model name are checked before the model loads.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nextgpt.cli.options import add_runtime_arguments
from nextgpt.errors import ConfigError, NextGPTError
from nextgpt.suggest import hint, listing


def add(parser: argparse.ArgumentParser):
    add_model_arguments(parser)
    parser.add_argument("-p", "--prompt", help="one-shot: answer this text and exit")
    parser.add_argument(
        "--media",
        nargs=2,
        action="append",
        default=[],
        metavar=("MODALITY", "FILE"),
        help="attach a file of any installed modality (repeatable)",
    )
    for name in installed_modalities():
        parser.add_argument(
            f"--{name}",
            dest=f"attach_{name}",
            action="append",
            default=[],
            metavar="FILE",
            help=f"shorthand for --media {name} FILE",
        )
    parser.add_argument(
        "--want", action="append", default=[], metavar="MODALITY", help="ask for this modality in the answer"
    )
    parser.add_argument("--out", default="outputs/chat", help="folder for generated media (default: outputs/chat)")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    add_runtime_arguments(parser)
    return run


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", default=None, help="a preset: tiny (default) or nextgpt-7b-v0")
    group.add_argument(
        "--model",
        default=None,
        help="a folder written by save_pretrained, a named model in NEXTGPT_HOME/models (e.g. toy) or a hub id",
    )


def installed_modalities() -> list[str]:
    """Modalities of the installed plugins: each gets a ``--<name> FILE`` flag."""
    import warnings

    from nextgpt.plugins import default_registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # broken plugins are shown by `plugins`
        return sorted(default_registry().modalities)


def load_model(args: argparse.Namespace):
    from nextgpt.model import NextGPTModel

    return NextGPTModel.from_pretrained(args.model or args.preset or "tiny")


def check_output_folder(out: str) -> None:
    """Refuse an ``--out`` that cannot be written (a file, under a file, read-only) before the
    model is loaded, instead of after an answer was generated."""
    from nextgpt.files import check_writable_folder

    check_writable_folder(Path(out), "--out folder")


def check_before_loading(args: argparse.Namespace, attachments: list[tuple[str, str]], want: list[str]) -> None:
    """Check the model name, ``--want`` and the attached files before the model loads (which can
    take minutes): a typo costs a second, and the error lists what is available."""
    from nextgpt.model import planned_modalities
    from nextgpt.plugins import default_registry
    from nextgpt.presets import PRESETS, preset_config

    registry = default_registry()
    if args.preset is not None and args.preset not in PRESETS:
        preset_config(args.preset, registry)  # raises: unknown preset, with "did you mean"
    reads, generates = planned_modalities(args.model or args.preset or "tiny", registry)
    for name in want:
        if name not in generates:
            raise ConfigError(f"--want: {unknown_output(name, generates)}")
    for modality, path in attachments:
        if modality not in reads:
            raise ConfigError(
                f"--media {modality}: this model reads no {modality!r}{hint(modality, reads)} "
                f"(it reads: {listing(reads)})"
            )
        problem = missing_file(path)
        if problem:
            raise ConfigError(problem)


def user_message(text: str, attachments: list[tuple[str, str]]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": modality, "path": path} for modality, path in attachments]
    if text:
        parts.append({"type": "text", "text": text})
    return {"role": "user", "content": parts}


def print_answer(output, stream: TextIO) -> None:
    print(f"assistant: {output.text}", file=stream)
    for item in output.media:
        print(f"  [{item.modality}] {item.path}", file=stream)


def run(args: argparse.Namespace) -> int:
    attachments = [(m, f) for m, f in args.media]
    for name in installed_modalities():
        attachments += [(name, f) for f in getattr(args, f"attach_{name}", [])]
    check_output_folder(args.out)
    check_before_loading(args, attachments, args.want)
    model = load_model(args)
    session = ChatSession(model, Path(args.out), args.max_new_tokens, args.seed)
    if args.prompt is not None:
        output = session.ask(args.prompt, attachments, args.want)
        print_answer(output, sys.stdout)
        return 0
    return session.interactive(sys.stdin, sys.stdout, attachments, args.want)


class ChatSession:
    """A conversation with history; failed turns leave the history as it was."""

    def __init__(self, model, out_dir: Path, max_new_tokens: int | None = None, seed: int | None = None) -> None:
        self.model = model
        self.out_dir = out_dir
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.history: list[dict[str, Any]] = []

    def ask(self, text: str, attachments: list[tuple[str, str]], want: list[str]):
        turn = len(self.history) // 2 + 1
        message = user_message(text, attachments)
        output = self.model.generate(
            [*self.history, message],
            output_dir=self.out_dir,
            request=want,
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
            file_prefix=f"turn{turn}_",
        )
        self.history += [message, output.as_message()]
        return output

    def interactive(self, stdin: TextIO, stdout: TextIO, attachments: list[tuple[str, str]], want: list[str]) -> int:
        print("nextgpt chat: /help lists the commands; /quit leaves", file=stdout)
        pending = PendingTurn(list(attachments), list(want))
        for line in stdin:
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if pending.command(line, self, stdout) == QUIT:
                    break
                continue
            start = time.perf_counter()
            try:
                output = self.ask(line, pending.attachments, pending.wanted)
            except NextGPTError as exc:
                print(f"error: {exc} (conversation kept: {len(self.history) // 2} turns)", file=stdout)
            else:
                print_answer(output, stdout)
                print(f"  ({time.perf_counter() - start:.1f} s)", file=stdout)
            pending.clear()
        return 0


QUIT = "quit"

CHAT_COMMANDS = {
    "help": "list these commands",
    "want": "MODALITY: ask for that modality in the next answer",
    "reset": "clear the history and what is pending for the next message",
    "quit": "leave (also /exit)",
    "exit": "leave",
}
"""Interactive commands besides ``/<modality> FILE`` (which attaches a file to the next message)."""


@dataclass
class PendingTurn:
    """What goes with the next message: attached files and requested modalities. Commands are
    checked when typed; a bad one is reported at once and changes nothing."""

    attachments: list[tuple[str, str]] = field(default_factory=list)
    wanted: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.attachments.clear()
        self.wanted.clear()

    def command(self, line: str, session: ChatSession, stdout: TextIO) -> str | None:
        """Carry out one ``/command``; returns `QUIT` to leave."""
        name, _, argument = line[1:].partition(" ")
        argument = argument.strip()
        model = session.model
        if name in ("quit", "exit"):
            return QUIT
        if name == "help":
            print(chat_help(model), file=stdout)
        elif name == "reset":
            session.history.clear()
            self.clear()
            print("(history and pending attachments cleared)", file=stdout)
        elif name == "want":
            if not argument:
                print(f"error: usage /want MODALITY (it can generate: {listing(sorted(model.decoders))})", file=stdout)
            elif argument not in model.decoders:
                print(f"error: {unknown_output(argument, model.decoders)}", file=stdout)
            else:
                self.wanted.append(argument)
        elif name in model.specs:
            problem = f"usage /{name} FILE" if not argument else missing_file(argument)
            if problem:
                print(f"error: {problem}", file=stdout)
            else:
                self.attachments.append((name, argument))
        else:
            known = [*CHAT_COMMANDS, *model.specs]
            print(
                f"error: unknown command /{name}{hint(name, known, prefix='/')}; /help lists the commands",
                file=stdout,
            )
        return None


def chat_help(model) -> str:
    lines = ["commands:"]
    lines += [f"  /{name} FILE: attach a file of modality {name} to the next message" for name in model.specs]
    lines += [f"  /{name} {text}" if name == "want" else f"  /{name}: {text}" for name, text in CHAT_COMMANDS.items()]
    lines.append(f"modalities it reads: {listing(model.specs)}; it can generate: {listing(sorted(model.decoders))}")
    return "\n".join(lines)


def unknown_output(name: str, outputs: Iterable[str]) -> str:
    names = sorted(outputs)
    return f"this model cannot generate {name!r}{hint(name, names)} (it can generate: {listing(names)})"


def missing_file(path: str) -> str | None:
    """Why ``path`` cannot be attached (not there, a folder, a link loop, unreadable), or None."""
    from nextgpt.files import file_problem

    problem = file_problem(Path(path).expanduser())
    return f"{path}: {problem}" if problem else None
