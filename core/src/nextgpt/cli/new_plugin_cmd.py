"""``nextgpt new-plugin NAME``: scaffold a working modality plugin distribution."""

from __future__ import annotations

import argparse

from nextgpt.cli.options import add_renamed


def add(parser: argparse.ArgumentParser):
    parser.add_argument("name", help="the modality name (lower case, e.g. thermal)")
    parser.add_argument("--out", default=".", metavar="DIR", help="where to create nextgpt-NAME/ (default: here)")
    add_renamed(parser, "--dir", "--out", dest="out")
    return run


def run(args: argparse.Namespace) -> int:
    from nextgpt.scaffold import scaffold_plugin

    root = scaffold_plugin(args.name, args.out)
    print(f"created {root}/")
    print(f"next: pip install -e {root} && nextgpt plugins && pytest {root}/tests")
    return 0
