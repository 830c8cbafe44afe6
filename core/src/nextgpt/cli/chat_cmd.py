"""``nextgpt chat``: talk to a model; one-shot with ``-p``, interactive otherwise.

Interactive commands: ``/<modality> PATH`` attaches a file to the next message (e.g.
``/image cat.png``), ``/request <modality>`` asks for that modality in the next answer (``/want``
is its old name), ``/reset`` clears the history and what is pending, ``/help`` lists them,
``/quit`` leaves. Each command is checked when typed (an unknown one gets a "did you mean"); a bad
file or an unknown modality is reported and the conversation goes on with its history kept.
``--request``, the attached files, the model name and every ``--config``/``--set`` override are
checked before the model loads. The answer's text is printed as the model writes it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from nextgpt.cli.options import (
    add_model_arguments,
    add_out_argument,
    add_placement_arguments,
    add_renamed,
    add_runtime_arguments,
    add_seed_argument,
    load_model_from_args,
    memory_plan_requested,
    placement_from_args,
    planned_config_from_args,
)
from nextgpt.errors import ConfigError, NextGPTError
from nextgpt.suggest import hint, listing

if TYPE_CHECKING:
    from nextgpt.plugins import PluginRegistry


def add(parser: argparse.ArgumentParser):
    add_model_arguments(parser)
    add_renamed(parser, "--preset", "--model", dest="model")
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
        "--request",
        action="append",
        default=[],
        metavar="MODALITY",
        help="ask for this modality in the answer (repeatable)",
    )
    add_renamed(parser, "--want", "--request", dest="request", append=True)
    add_out_argument(parser, "outputs/chat", "generated media")
    parser.add_argument("--max-new-tokens", type=int, default=None, metavar="N", help="most tokens of an answer")
    add_seed_argument(parser)
    add_placement_arguments(parser)
    add_runtime_arguments(parser)
    return run


def installed_modalities() -> list[str]:
    """Modalities of the installed plugins: each gets a ``--<name> FILE`` flag. With two plugins
    in conflict the flags of both are there; the command then stops with the conflict's error."""
    import warnings

    from nextgpt.errors import PluginConflictError
    from nextgpt.plugins import default_registry, load_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # broken plugins are shown by `plugins`
        try:
            return sorted(default_registry().modalities)
        except PluginConflictError:
            return sorted(load_plugins(conflicts="report").modalities)


def check_output_folder(out: str) -> None:
    """Refuse an ``--out`` that cannot be written (a file, under a file, read-only) before the
    model is loaded, instead of after an answer was generated."""
    from nextgpt.files import check_writable_folder

    check_writable_folder(Path(out), "--out folder")


def check_before_loading(args: argparse.Namespace, attachments: list[tuple[str, str]], request: list[str]) -> None:
    """Check the model name, its overrides, ``--request`` and the attached files before the
    model loads (which can take minutes): a typo costs a second, and the error lists what is
    available."""
    from nextgpt.overrides import reads_and_generates
    from nextgpt.plugins import default_registry

    registry = default_registry()
    placement_from_args(args)  # --device and --dtype
    config = planned_config_from_args(args, registry=registry)
    reads, generates = reads_and_generates(config, registry)
    for name in request:
        if name not in generates:
            raise ConfigError(f"--request: {unknown_output(name, generates, registry)}")
    for modality, path in attachments:
        if modality not in reads:
            if modality not in registry.modalities:
                registry.modality(modality)  # raises: not installed, or installed but failed to load
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
    print_media(output, stream)


def print_media(output, stream: TextIO) -> None:
    for item in output.media:
        print(f"  [{item.modality}] {item.path}", file=stream)


class AnswerPrinter:
    """Prints an answer as it streams: ``assistant: `` and each text piece as it comes (flushed),
    then the media files, one per line, once the turn is done."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = False

    def text(self, delta: str) -> None:
        if not self.started:
            self.stream.write("assistant: ")
            self.started = True
        self.stream.write(delta)
        self.stream.flush()

    def finish(self, output) -> None:
        if not self.started:
            self.stream.write("assistant: " + output.text)
        self.stream.write("\n")
        print_media(output, self.stream)
        self.started = False

    def abort(self) -> None:
        """The turn failed: end a line already begun, so the error starts its own."""
        if self.started:
            self.stream.write("\n")
        self.started = False


def run(args: argparse.Namespace) -> int:
    attachments = [(m, f) for m, f in args.media]
    for name in installed_modalities():
        attachments += [(name, f) for f in getattr(args, f"attach_{name}", [])]
    check_output_folder(args.out)
    check_before_loading(args, attachments, args.request)
    if memory_plan_requested(args):
        return 0
    model = load_model_from_args(args)
    session = ChatSession(model, Path(args.out), args.max_new_tokens, args.seed)
    if args.prompt is not None:
        printer = AnswerPrinter(sys.stdout)
        session.on_text = printer.text
        try:
            output = session.ask(args.prompt, attachments, args.request)
        except BaseException:
            printer.abort()
            raise
        printer.finish(output)
        return 0
    return session.interactive(sys.stdin, sys.stdout, attachments, args.request)


class ChatSession:
    """A conversation with history; failed turns leave the history as it was."""

    def __init__(self, model, out_dir: Path, max_new_tokens: int | None = None, seed: int | None = None) -> None:
        self.model = model
        self.out_dir = out_dir
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.history: list[dict[str, Any]] = []
        self.on_text: Callable[[str], None] | None = None
        """Called with each piece of an answer's text as the model writes it (streaming), if set."""

    def ask(self, text: str, attachments: list[tuple[str, str]], request: list[str]):
        from nextgpt.streaming import Finished, TextDelta

        turn = len(self.history) // 2 + 1
        message = user_message(text, attachments)
        options: dict[str, Any] = dict(
            output_dir=self.out_dir,
            request=request,
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
            file_prefix=f"turn{turn}_",
        )
        if self.on_text is None:
            output = self.model.generate([*self.history, message], **options)
        else:
            for event in self.model.generate([*self.history, message], stream=True, **options):
                if isinstance(event, TextDelta):
                    self.on_text(event.text)
                elif isinstance(event, Finished):
                    output = event.output
        self.history += [message, output.as_message()]
        return output

    def interactive(self, stdin: TextIO, stdout: TextIO, attachments: list[tuple[str, str]], request: list[str]) -> int:
        print("nextgpt chat: /help lists the commands; /quit leaves", file=stdout)
        pending = PendingTurn(list(attachments), list(request))
        printer = AnswerPrinter(stdout)
        self.on_text = printer.text
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
                output = self.ask(line, pending.attachments, pending.requested)
            except NextGPTError as exc:
                printer.abort()
                print(f"error: {exc} (conversation kept: {len(self.history) // 2} turns)", file=stdout)
            else:
                printer.finish(output)
                print(f"  ({time.perf_counter() - start:.1f} s)", file=stdout)
            pending.clear()
        return 0


QUIT = "quit"

CHAT_COMMANDS = {
    "help": "list these commands",
    "request": "MODALITY: ask for that modality in the next answer",
    "reset": "clear the history and what is pending for the next message",
    "quit": "leave (also /exit)",
    "exit": "leave",
}
"""Interactive commands besides ``/<modality> FILE`` (which attaches a file to the next message)."""

RENAMED_COMMANDS = {"want": "request"}
"""Old names of interactive commands: they still work, with a note naming the new one."""


@dataclass
class PendingTurn:
    """What goes with the next message: attached files and requested modalities. Commands are
    checked when typed; a bad one is reported at once and changes nothing."""

    attachments: list[tuple[str, str]] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.attachments.clear()
        self.requested.clear()

    def command(self, line: str, session: ChatSession, stdout: TextIO) -> str | None:
        """Carry out one ``/command``; returns `QUIT` to leave."""
        name, _, argument = line[1:].partition(" ")
        argument = argument.strip()
        model = session.model
        if name in RENAMED_COMMANDS:
            print(f"(/{name} is an old name: use /{RENAMED_COMMANDS[name]})", file=stdout)
            name = RENAMED_COMMANDS[name]
        if name in ("quit", "exit"):
            return QUIT
        if name == "help":
            print(chat_help(model), file=stdout)
        elif name == "reset":
            session.history.clear()
            self.clear()
            print("(history and pending attachments cleared)", file=stdout)
        elif name == "request":
            if not argument:
                usage = f"usage /request MODALITY (it can generate: {listing(sorted(model.decoders))})"
                print(f"error: {usage}", file=stdout)
            elif argument not in model.decoders:
                print(f"error: {unknown_output(argument, model.decoders, model.registry)}", file=stdout)
            else:
                self.requested.append(argument)
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
    lines += [
        f"  /{name} {text}" if name == "request" else f"  /{name}: {text}" for name, text in CHAT_COMMANDS.items()
    ]
    lines.append(f"modalities it reads: {listing(model.specs)}; it can generate: {listing(sorted(model.decoders))}")
    return "\n".join(lines)


def unknown_output(name: str, outputs: Iterable[str], registry: PluginRegistry | None = None) -> str:
    """Why ``name`` cannot be requested: what the model can generate, with a "did you mean", and
    the plugin that would provide it but failed to load, if one did."""
    names = sorted(outputs)
    failed = registry.load_failure_note(name) if registry is not None else ""
    return f"this model cannot generate {name!r}{hint(name, names)} (it can generate: {listing(names)}){failed}"


def missing_file(path: str) -> str | None:
    """Why ``path`` cannot be attached (not there, a folder, a link loop, unreadable), or None."""
    from nextgpt.files import file_problem

    problem = file_problem(Path(path).expanduser())
    return f"{path}: {problem}" if problem else None
