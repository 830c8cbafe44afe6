"""Streaming one assistant turn: its text as the LLM writes it, each media item when it is ready.

``NextGPTModel.generate(..., stream=True)`` returns an iterator of these events, in order:
`TextDelta` pieces whose concatenation is the answer's text (signal tokens hidden, the stop
string never shown), one `MediaReady` per generated item as soon as it is written, then one
`Finished` with the whole `GenerationOutput` (the same object a plain ``generate`` returns).

The turn runs on a worker thread that feeds a queue (the way `transformers`'
``TextIteratorStreamer`` does): ``generate`` reports through two callbacks, ``on_text`` and
``on_media``, and the iterator hands their events over as they come. An error inside the turn
is raised by the iterator, after the events produced before it.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nextgpt.generation import GeneratedMedia, GenerationOutput

__all__ = ["Finished", "MediaReady", "StreamEvent", "TextDelta", "VisibleTextDeltas", "stream_turn"]


@dataclass(frozen=True)
class TextDelta:
    """New text of the answer, to append to what came before."""

    text: str


@dataclass(frozen=True)
class MediaReady:
    """A generated media item, written to its file (if the turn writes files)."""

    item: GeneratedMedia


@dataclass(frozen=True)
class Finished:
    """The turn is done: the complete output, as ``generate`` returns it without streaming."""

    output: GenerationOutput


StreamEvent = TextDelta | MediaReady | Finished

TextCallback = Callable[[str], None]
MediaCallback = Callable[["GeneratedMedia"], None]


class VisibleTextDeltas:
    """Turns the LLM's growing token ids into deltas of the text a reader sees.

    Args:
        visible_text: ``ids -> str``, the answer's text for those ids (signal tokens and special
            tokens dropped, whitespace stripped: what ``GenerationOutput.text`` holds).
        stop: stop strings; text from the first one on is never shown, and a tail that could be
            the start of one is held back until the next token settles it.
        emit: called with each non-empty delta.

    Trailing whitespace and a trailing incomplete UTF-8 character (``\\ufffd``) are held back too, so
    that the deltas always add up to a prefix of the final text; `finish` sends the rest.
    """

    def __init__(self, visible_text: Callable[[list[int]], str], stop: Sequence[str], emit: TextCallback) -> None:
        self._visible_text = visible_text
        self._stop = [s for s in stop if s]
        self._emit = emit
        self._ids: list[int] = []
        self._sent = ""
        self._stopped = False

    def add(self, token_id: int) -> None:
        """One more generated token."""
        if self._stopped:
            return
        self._ids.append(int(token_id))
        self._send_upto(self._safe_prefix(self._visible_text(self._ids)))

    def finish(self, final_text: str) -> None:
        """The turn's final text: send whatever of it has not been sent yet."""
        if final_text.startswith(self._sent):
            self._send_upto(final_text)
        self._stopped = True

    def _safe_prefix(self, text: str) -> str:
        for stop in self._stop:
            at = text.find(stop)
            if at >= 0:
                self._stopped = True
                return text[:at].rstrip()
        held = max((k for stop in self._stop for k in range(1, len(stop)) if text.endswith(stop[:k])), default=0)
        text = text[: len(text) - held] if held else text
        return text.rstrip().rstrip("\ufffd").rstrip()

    def _send_upto(self, text: str) -> None:
        if text.startswith(self._sent) and len(text) > len(self._sent):
            delta = text[len(self._sent) :]
            self._sent = text
            self._emit(delta)


_END = object()


def stream_turn(run: Callable[[TextCallback, MediaCallback], GenerationOutput]) -> Iterator[StreamEvent]:
    """Run ``run(on_text, on_media)`` on a worker thread and yield its events as they come,
    then `Finished` with what it returned. The worker sees the caller's context variables
    (e.g. `nextgpt.progress.progress_scope`); an exception it raises is raised here."""
    events: queue.Queue[object] = queue.Queue()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            output = run(lambda text: events.put(TextDelta(text)), lambda item: events.put(MediaReady(item)))
            events.put(Finished(output))
        except BaseException as exc:  # handed to the consumer, raised there
            failure.append(exc)
        finally:
            events.put(_END)

    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(work,), name="nextgpt-generate", daemon=True)
    worker.start()
    while True:
        event = events.get()
        if event is _END:
            break
        yield event  # type: ignore[misc]
    worker.join()
    if failure:
        raise failure[0]
