"""The ``nextgpt`` command line. Each sub-command lives in its own module of this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

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
        ("convert-legacy", "convert the released NExT-GPT checkpoint into a model folder", convert_cmd.add),
    ]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = argparse.ArgumentParser(prog="nextgpt", description="any-to-any multimodal LLM toolkit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Command] = {}
    for name, help_text, add in _commands():
        handlers[name] = add(sub.add_parser(name, help=help_text, description=help_text))
    return parser, handlers


def _quiet_library_warnings() -> None:
    """Hide deprecation chatter of the libraries underneath; our own errors still print."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="enable_nested_tensor is True")


def _one_line_warnings() -> None:
    """Print nextgpt's own warnings as one ``warning: ...`` line (no source location)."""
    import warnings

    from nextgpt.errors import NextGPTWarning

    default = warnings.formatwarning
    if getattr(default, "one_line_for_nextgpt", False):
        return  # already installed (main called again in the same process)

    def formatwarning(message, category, filename, lineno, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, NextGPTWarning):
            return f"warning: {message}\n"
        return default(message, category, filename, lineno, line)

    formatwarning.one_line_for_nextgpt = True  # type: ignore[attr-defined]
    warnings.formatwarning = formatwarning


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_library_warnings()
    _one_line_warnings()
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
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
