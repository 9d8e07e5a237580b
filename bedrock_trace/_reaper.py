"""Ending spans from finalisers, safely, on a background thread.

Finalisers (``__del__``, a generator closed by the garbage collector) run at arbitrary points,
possibly while the same thread holds a lock inside MLflow. They only enqueue work here
(``SimpleQueue.put`` is safe in that position); a daemon thread does the MLflow calls.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from bedrock_trace._guard import Guard


class _Reaper:
    """Ends spans whose owner was garbage-collected (or closed from a finaliser), on a thread.

    Finalisers run at arbitrary points, possibly while this very thread holds a lock inside
    MLflow, so they only enqueue (``SimpleQueue.put`` is safe there) and the work happens here.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pid: int | None = None
        self._start_lock = threading.Lock()

    def start(self) -> None:
        """Start the thread if this process has none yet (also after ``fork``)."""
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            thread = threading.Thread(target=self._run, name="bedrock-trace-reaper", daemon=True)
            thread.start()
            self._pid = os.getpid()

    def submit(self, end: Callable[[int], None]) -> None:
        """Queue ``end(end_time_ns)``, with the time of this call as the end time."""
        self._queue.put((end, time.time_ns()))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far has been ended; True if it was."""
        if self._pid != os.getpid():
            self._drain_here()
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _drain_here(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._handle(item)

    def _run(self) -> None:
        while True:
            self._handle(self._queue.get())

    @staticmethod
    def _handle(item: Any) -> None:
        if isinstance(item, threading.Event):
            item.set()
            return
        end, end_time_ns = item
        with Guard("reaper", reraise_in_strict=False):
            end(end_time_ns)


reaper = _Reaper()
atexit.register(reaper.flush, 5.0)
