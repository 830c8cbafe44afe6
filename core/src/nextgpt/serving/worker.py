"""One model, one worker: requests run on the model one at a time, in arrival order, and a
bounded number may wait (the next one is refused with 503 rather than queued without end)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from nextgpt.serving.openai_format import RequestError

T = TypeVar("T")


class ModelWorker:
    """Runs jobs on a single thread. ``queue_size`` jobs may wait behind the one running."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nextgpt-model")
        self._lock = threading.Lock()
        self._pending = 0
        self.served = 0

    @property
    def pending(self) -> int:
        """Jobs running or waiting."""
        return self._pending

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Queue ``job``; `RequestError` 503 when ``queue_size`` jobs already wait."""
        with self._lock:
            if self._pending > self.queue_size:
                raise RequestError(
                    503,
                    f"the server is busy: {self._pending} requests are in its queue; try again shortly",
                    code="queue_full",
                )
            self._pending += 1
        future = self._executor.submit(job)
        future.add_done_callback(self._done)
        return future

    async def run(self, job: Callable[[], T]) -> T:
        """Queue ``job`` and wait for its result (its slot is freed when it ends, even if the
        caller stops waiting)."""
        return await asyncio.wrap_future(self.submit(job))

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending -= 1
            self.served += 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
