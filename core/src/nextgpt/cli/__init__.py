"""The ``nextgpt`` command line. Each sub-command lives in its own module of this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Collection, Sequence

from nextgpt.cli.options import apply_runtime_arguments
from nextgpt.errors import NextGPTError

Command = Callable[[argparse.Namespace], int]


def _commands() -> list[tuple[str, str, Callable[[argparse.ArgumentParser], Command]]]:
    """(name, help, add_arguments) for each sub-command; imports stay lazy."""
    from nextgpt.cli import (
        cache_cmd,
        chat_cmd,
        convert_cmd,
        demo_cmd,
        eval_cmd,
        export_cmd,
        fit_cmd,
        new_plugin_cmd,
        plugins_cmd,
        serve_cmd,
        web_cmd,
    )

    return [
        ("plugins", "list installed plugins, their modalities, tokens and backends", plugins_cmd.add),
        ("chat", "talk to a model; text and media in, text and media out", chat_cmd.add),
        ("demo", "an offline scripted any-to-any conversation with the tiny preset", demo_cmd.add),
        ("fit", "train a stage with the Lightning CLI: nextgpt fit --config FILE", fit_cmd.add),
        ("cache", "precompute frozen-encoder features and caption embeddings for a config", cache_cmd.add),
        ("export", "write a trained checkpoint as a folder from_pretrained loads", export_cmd.add),
        ("eval", "evaluate a model: captioning metrics, or the metrics of generated media", eval_cmd.add),
        ("new-plugin", "create a working modality plugin distribution to build on", new_plugin_cmd.add),
        ("serve", "serve a model behind an OpenAI-compatible HTTP API", serve_cmd.add),
        ("web", "a web demo of a model: chat with files in and media out (Gradio)", web_cmd.add),
        ("convert-legacy", "convert the released NExT-GPT checkpoint into a model folder", convert_cmd.add),
    ]


class _VersionAction(argparse.Action):
    """``--version``: every installed nextgpt distribution and plugin, with versions."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the installed nextgpt distributions and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from nextgpt.versions import version_report

        print(version_report())
        parser.exit()


def build_parser(only: Collection[str] | None = None) -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    """The parser and each sub-command's handler. With ``only``, just those sub-commands get
    their options (and a handler): building a command's options may load the plugins (and
    torch), which ``nextgpt --version``, ``--help`` and the other commands need not wait for."""
    parser = argparse.ArgumentParser(prog="nextgpt", description="any-to-any multimodal LLM toolkit")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Command] = {}
    for name, help_text, add in _commands():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name in only:
            handlers[name] = add(command_parser)
    return parser, handlers


def _quiet_library_warnings() -> None:
    """Hide deprecation chatter of the libraries underneath; our own errors still print, and
    warnings read ``warning: ...`` on one line, like errors."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="enable_nested_tensor is True")


def _one_line(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> str:
    """``warnings.formatwarning`` for the command line: ``warning: <message>``, no source line.
    Only the format changes, so whoever records warnings (a caller, pytest) still sees them."""
    return f"warning: {message}\n"


def unknown_command(argv: Sequence[str], commands: Sequence[str]) -> str | None:
    """The error for a first argument that is no sub-command (with a "did you mean"), or None."""
    from nextgpt.suggest import hint, listing

    first = argv[0] if argv and not argv[0].startswith("-") else None
    if first is None or first in commands:
        return None
    return f"unknown command {first!r}{hint(first, commands)} (commands: {listing(commands)})"


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    from nextgpt.progress import process_choice_kept

    default_format = warnings.formatwarning
    # the warning filters and the progress choice (--quiet) are put back for in-process callers
    with warnings.catch_warnings(), process_choice_kept():
        _quiet_library_warnings()
        warnings.formatwarning = _one_line
        try:
            return _run(argv)
        finally:
            warnings.formatwarning = default_format


def _run(argv: Sequence[str] | None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    problem = unknown_command(given, [name for name, _, _ in _commands()])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    parser, handlers = build_parser(only=given[:1])  # the first argument names the command
    try:
        args = parser.parse_args(given)  # inside: an old option's error is one line too
        if args.command is None:
            parser.print_help()
            return 2
        apply_runtime_arguments(args)
        return handlers[args.command](args)
    except NextGPTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file-system problem nothing below turned into a NextGPTError
        from nextgpt.files import describe_os_error

        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
