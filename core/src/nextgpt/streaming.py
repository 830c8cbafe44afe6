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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nextgpt.generation import GeneratedMedia, GenerationOutput

__all__ = ["Finished", "MediaReady", "StreamEvent", "TextDelta", "stream_turn"]


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
