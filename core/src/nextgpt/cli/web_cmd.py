"""``nextgpt web``: a Gradio web demo of a model (see `nextgpt.serving.web`): chat with files of
any installed modality in, and text and media out."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nextgpt.cli.options import (
    add_model_arguments,
    add_out_argument,
    add_placement_arguments,
    add_renamed,
    add_runtime_arguments,
    load_model_from_args,
    memory_plan_requested,
)
from nextgpt.cli.serve_options import add_listen_arguments, check_serve_extra


def add(parser: argparse.ArgumentParser):
    add_model_arguments(parser)
    add_renamed(parser, "--preset", "--model", dest="model")
    add_listen_arguments(parser, port=7860)
    add_out_argument(parser, "outputs/web", "generated media")
    add_runtime_arguments(parser)
    add_placement_arguments(parser)
    return run


def run(args: argparse.Namespace) -> int:
    from nextgpt.files import check_writable_folder

    check_serve_extra("web", ("gradio",))
    out = Path(args.out).resolve()
    check_writable_folder(out, "--out folder")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if memory_plan_requested(args):
        return 0
    model = load_model_from_args(args)
    from nextgpt.serving.web import create_web_app

    out.mkdir(parents=True, exist_ok=True)
    app = create_web_app(model, out, title=f"nextgpt ({args.model})")
    print(f"web demo of {args.model!r} on http://{args.host}:{args.port} (Ctrl-C stops)", file=sys.stderr, flush=True)
    app.queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, allowed_paths=[str(out)], quiet=True, show_error=True
    )
    return 0
