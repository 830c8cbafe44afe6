"""Options ``nextgpt serve`` and ``nextgpt web`` share: where to listen, the API key, the limits
(`nextgpt.serving.settings.ServeSettings`); the device comes from `add_placement_arguments`."""

from __future__ import annotations

import argparse
import os

ENV_API_KEY = "NEXTGPT_API_KEY"


def add_listen_arguments(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=port, help=f"port to listen on (default: {port})")


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    from nextgpt.serving.settings import ServeSettings

    d = ServeSettings()
    parser.add_argument(
        "--api-key",
        default=os.environ.get(ENV_API_KEY),
        metavar="KEY",
        help=f"require 'Authorization: Bearer KEY' on /v1 requests (default: ${ENV_API_KEY}, else none)",
    )
    parser.add_argument("--name", default=None, help="the model id clients name (default: the --model value)")
    parser.add_argument(
        "--max-request-mb", type=float, default=d.max_request_bytes / 2**20, metavar="MB", help="largest request body"
    )
    parser.add_argument(
        "--max-media-mb", type=float, default=d.max_media_bytes / 2**20, metavar="MB", help="largest media file"
    )
    parser.add_argument("--max-pixels", type=int, default=d.max_pixels, metavar="N", help="most pixels of a picture")
    parser.add_argument("--max-seconds", type=float, default=d.max_seconds, metavar="S", help="longest sound or video")
    parser.add_argument(
        "--queue-size", type=int, default=d.queue_size, metavar="N", help="requests that may wait (503 beyond)"
    )


def settings_from_args(args: argparse.Namespace):
    from nextgpt.config import validate_model
    from nextgpt.serving.settings import ServeSettings

    values = {
        "model_name": args.name or str(args.model),
        "api_key": args.api_key or None,
        "max_request_bytes": int(args.max_request_mb * 2**20),
        "max_media_bytes": int(args.max_media_mb * 2**20),
        "max_pixels": args.max_pixels,
        "max_seconds": args.max_seconds,
        "queue_size": args.queue_size,
    }
    return validate_model(ServeSettings, values, "serve options")


def check_serve_extra(command: str, modules: tuple[str, ...]) -> None:
    """One line naming the extra to install when a library the command needs is missing (only
    those: the extra also holds the tools its tests use)."""
    import importlib.util

    from nextgpt.extras import MissingExtraError, install_command

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(
            f"nextgpt {command} needs the 'serve' extra (missing: {', '.join(missing)}); install it with: "
            f"{install_command('serve')}"
        )
