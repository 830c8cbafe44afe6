"""``nextgpt fit --config FILE [--trainer.max_steps=N ...]``: train a stage with the Lightning CLI.

Everything after ``fit`` goes to `nextgpt.training.cli.NextGPTCLI` (a LightningCLI), so every
Lightning option works, e.g. ``--ckpt_path last`` to resume a run from its last checkpoint and
``--print_config`` to show the full configuration. Also runnable as
``python -m nextgpt.cli.fit_cmd --config FILE`` (what Lightning's DDP launcher re-executes).

Two options read as on the other commands (`lightning_arguments` rewrites them):
``--model NAME`` is the model to train from (a preset, named model, folder or hub id; Lightning's
``--model.model NAME``), and ``--set KEY=VALUE`` sets one setting of its configuration (appended to
``--model.overrides``); ``--commercial-only`` sets ``licence_policy=commercial`` as on the other
commands. ``--config`` is the training configuration, as Lightning reads it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def add(parser: argparse.ArgumentParser):
    # Every argument, options included, belongs to the LightningCLI: stop this parser from
    # treating "--config" (or "-h") as its own options.
    parser.prefix_chars = "\0"
    parser.add_argument(
        "lightning_args",
        nargs="*",
        metavar="LIGHTNING_ARGS",
        help="LightningCLI arguments: --config FILE, --model NAME, --set KEY=VALUE, --commercial-only, "
        "--trainer.*, --model.*, --data.*, --ckpt_path",
    )
    return run


def lightning_arguments(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--model NAME`` as ``--model.model NAME``, ``--set KEY=VALUE`` as
    ``--model.overrides+=KEY=VALUE`` and ``--commercial-only`` as the setting
    ``licence_policy=commercial`` (the spellings the LightningCLI reads); the rest unchanged."""
    out: list[str] = []
    items = iter(argv)
    renamed = {"--model": "--model.model", "--set": "--model.overrides+"}
    for item in items:
        option, sep, value = item.partition("=")
        if item == "--commercial-only":
            out.append("--model.overrides+=licence_policy=commercial")
        elif option in renamed:
            if not sep:
                value = next(items, "")
            out.append(f"{renamed[option]}={value}")
        else:
            out.append(item)
    return out


def run(args: argparse.Namespace) -> int:
    return main(args.lightning_args)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    from nextgpt.extras import require_extra

    require_extra("train", "nextgpt fit")
    from nextgpt.training.cli import NextGPTCLI

    # the arguments come from our own command line; Lightning's launchers re-read sys.argv
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    NextGPTCLI(args=["fit", *lightning_arguments(sys.argv[1:] if argv is None else argv)], run=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
