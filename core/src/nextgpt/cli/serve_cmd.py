"""``nextgpt serve``: the model behind an OpenAI-compatible HTTP API (FastAPI + uvicorn).

``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` (see `nextgpt.serving`). One
model, one worker: requests queue (``--queue-size``, 503 beyond) and never run on the model at
once; each is logged on one line when it ends.
"""

from __future__ import annotations

import argparse
import logging
import sys

from nextgpt.cli.options import (
    add_model_arguments,
    add_placement_arguments,
    add_renamed,
    add_runtime_arguments,
    load_model_from_args,
    memory_plan_requested,
)
from nextgpt.cli.serve_options import (
    add_limit_arguments,
    add_listen_arguments,
    check_serve_extra,
    settings_from_args,
)


def add(parser: argparse.ArgumentParser):
    add_model_arguments(parser)
    add_renamed(parser, "--preset", "--model", dest="model")
    add_listen_arguments(parser, port=8000)
    add_limit_arguments(parser)
    add_runtime_arguments(parser)
    add_placement_arguments(parser)
    return run


def log_to_stderr() -> None:
    """Request lines (``nextgpt.serve``) on standard error, with a time stamp."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("nextgpt.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run(args: argparse.Namespace) -> int:
    check_serve_extra("serve", ("fastapi", "uvicorn"))
    settings = settings_from_args(args)
    if memory_plan_requested(args):
        return 0
    model = load_model_from_args(args)
    import uvicorn

    from nextgpt.serving.app import create_app, http_protocol

    log_to_stderr()
    app = create_app(model, settings)
    print(
        f"serving {settings.model_name!r} on http://{args.host}:{args.port}/v1 (OpenAI chat completions; Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", http=http_protocol())
    return 0
