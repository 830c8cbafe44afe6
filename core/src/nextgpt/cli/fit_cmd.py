"""``nextgpt fit --config FILE [--trainer.max_steps=N ...]``: train a stage with the Lightning CLI.

Everything after ``fit`` goes to `nextgpt.training.cli.NextGPTCLI` (a LightningCLI), so every
Lightning option works, e.g. ``--ckpt_path last`` to resume a run from its last checkpoint and
``--print_config`` to show the full configuration. Also runnable as
``python -m nextgpt.cli.fit_cmd --config FILE`` (what Lightning's DDP launcher re-executes).
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
        help="LightningCLI arguments: --config FILE, --trainer.*, --model.*, --data.*, --ckpt_path",
    )
    return run


def run(args: argparse.Namespace) -> int:
    return main(args.lightning_args)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    from nextgpt.extras import require_extra

    require_extra("train", "nextgpt fit")
    from nextgpt.training.cli import NextGPTCLI

    # the arguments come from our own command line; Lightning's launchers re-read sys.argv
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    NextGPTCLI(args=["fit", *(sys.argv[1:] if argv is None else argv)], run=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
