"""Options every model-running command shares: ``--quiet`` and ``--threads``."""

from __future__ import annotations

import argparse

from nextgpt.threads import ENV_THREADS


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars (they are shown on a terminal by default)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help=f"torch CPU threads (default: {ENV_THREADS}, OMP_NUM_THREADS, else the CPUs this process "
        "may use that other processes do not keep busy)",
    )


def apply_runtime_arguments(args: argparse.Namespace) -> None:
    """Set up progress bars and threads as the command line says (each command may have neither)."""
    from nextgpt.progress import set_progress
    from nextgpt.threads import configure_threads

    if getattr(args, "quiet", False):
        set_progress(False)
    configure_threads(getattr(args, "threads", None))
