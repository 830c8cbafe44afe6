"""Progress bars for long work: the LLM's generation and each decoder's denoising.

Shown by default when standard error is a terminal, hidden otherwise (logs, pipes, tests). The
choice can be fixed for the whole process (`set_progress`, ``NEXTGPT_PROGRESS=0|1``, the CLI's
``--quiet``) or for a block of code (`progress_scope`, e.g. ``generate(..., progress=False)``);
decoders ask `progress_enabled` when they run, so they follow whichever applies.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

ENV_PROGRESS = "NEXTGPT_PROGRESS"
"""``0`` hides every bar, ``1`` shows them even when standard error is not a terminal."""

_process_choice: bool | None = None
_scope_choice: contextvars.ContextVar[bool | None] = contextvars.ContextVar("nextgpt_progress", default=None)


def set_progress(enabled: bool | None) -> None:
    """Show (True) or hide (False) bars in this process; None goes back to the default."""
    global _process_choice
    _process_choice = enabled


@contextlib.contextmanager
def process_choice_kept() -> Iterator[None]:
    """Put the process-wide choice (`set_progress`) back as it was when the block ends: the
    command line's ``--quiet`` applies to one command run in-process, not to its caller."""
    saved = _process_choice
    try:
        yield
    finally:
        set_progress(saved)


@contextlib.contextmanager
def progress_scope(enabled: bool | None) -> Iterator[None]:
    """Within the block, bars follow ``enabled`` (None: whatever applied before)."""
    if enabled is None:
        yield
        return
    token = _scope_choice.set(enabled)
    try:
        yield
    finally:
        _scope_choice.reset(token)


def progress_enabled() -> bool:
    """Whether to show a bar now: the innermost `progress_scope`, then `set_progress`, then
    ``NEXTGPT_PROGRESS``, then whether standard error is a terminal."""
    for choice in (_scope_choice.get(), _process_choice):
        if choice is not None:
            return choice
    env = os.environ.get(ENV_PROGRESS, "").strip()
    if env in ("0", "1"):
        return env == "1"
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def bar(total: int | None = None, desc: str = "", unit: str = "it", **kwargs: Any) -> Any:
    """A tqdm bar on standard error, disabled unless `progress_enabled`; it disappears when
    done (``leave=False``), so finished work leaves only its results on the screen."""
    from tqdm.auto import tqdm

    kwargs.setdefault("leave", False)
    return tqdm(total=total, desc=desc, unit=unit, disable=not progress_enabled(), file=sys.stderr, **kwargs)


class TokenProgress:
    """A `transformers` generation streamer that advances a bar by one per generated token.

    ``generate`` calls ``put`` first with the prompt (ignored here: with ``inputs_embeds`` it
    holds no ids), then once per new token, and ``end`` when it stops. ``on_token``, if given,
    is called with each new token's id (what streaming the answer's text builds on).
    """

    def __init__(
        self, max_new_tokens: int, desc: str = "generating", on_token: Callable[[int], None] | None = None
    ) -> None:
        self._bar = bar(total=max_new_tokens, desc=desc, unit="tok")
        self._prompt_seen = False
        self._on_token = on_token

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self._bar.update(1)
        if self._on_token is not None:
            for token_id in value.reshape(-1).tolist():
                self._on_token(int(token_id))

    def end(self) -> None:
        self._bar.close()


class Streamers:
    """Several `transformers` generation streamers as one (``generate`` takes one)."""

    def __init__(self, streamers: list[Any]) -> None:
        self.streamers = streamers

    def put(self, value: Any) -> None:
        for streamer in self.streamers:
            streamer.put(value)

    def end(self) -> None:
        for streamer in self.streamers:
            streamer.end()
