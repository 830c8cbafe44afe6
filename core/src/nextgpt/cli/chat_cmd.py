"""``nextgpt chat``: talk to a model; one-shot with ``-p``, interactive otherwise.

Interactive commands: ``/<modality> PATH`` attaches a file to the next message (e.g.
``/image cat.png``), ``/want <modality>`` asks for that modality in the next answer, ``/reset``
clears the history, ``/quit`` leaves. A bad file or an unknown modality is reported and the
conversation goes on with its history kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from nextgpt.errors import NextGPTError


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
    check_output_folder(args.out)
    model = load_model(args)
    attachments = [(m, f) for m, f in args.media]
    for name in installed_modalities():
        attachments += [(name, f) for f in getattr(args, f"attach_{name}", [])]
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
        print("nextgpt chat: /<modality> FILE attaches, /want MODALITY asks for one, /reset, /quit", file=stdout)
        pending, wanted = list(attachments), list(want)
        for line in stdin:
            line = line.strip()
            if not line:
                continue
            if line in ("/quit", "/exit"):
                break
            if line == "/reset":
                self.history.clear()
                print("(history cleared)", file=stdout)
                continue
            if line.startswith("/want "):
                wanted.append(line.split(maxsplit=1)[1])
                continue
            if line.startswith("/"):
                command, _, path = line[1:].partition(" ")
                if not path:
                    print(f"error: usage /{command} FILE", file=stdout)
                    continue
                pending.append((command, path.strip()))
                continue
            start = time.perf_counter()
            try:
                output = self.ask(line, pending, wanted)
            except NextGPTError as exc:
                print(f"error: {exc} (conversation kept: {len(self.history) // 2} turns)", file=stdout)
            else:
                print_answer(output, stdout)
                print(f"  ({time.perf_counter() - start:.1f} s)", file=stdout)
            pending, wanted = [], []
        return 0
