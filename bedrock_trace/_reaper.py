"""Ending spans from finalisers, safely, on a background thread, and before the program exits.

Finalisers (``__del__``, a generator closed by the garbage collector) run at arbitrary points,
possibly while the same thread holds a lock inside MLflow. They only enqueue work here
(``SimpleQueue.put`` is safe in that position); a daemon thread does the MLflow calls.

At exit, what is queued is ended, then every stream still open (held by the program, never
read to its end), before MLflow's exporter and the OpenTelemetry tracer provider shut down:
those register their own ``atexit`` handlers when the first span starts, and ``atexit`` runs
the last registered first, so a plain ``atexit`` handler of ours would run after them and the
spans it ends would never be written. The exit flush is therefore registered as a
threading-shutdown hook, which the interpreter runs before any ``atexit`` handler (the same
hook ``concurrent.futures`` uses for its workers).
"""

from __future__ import annotations

import atexit
import functools
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from bedrock_trace._guard import Guard

EXIT_REASON = "the program exited before the stream was read to its end"
# The longest the program's exit waits for spans to end (MLflow's own exit flush has no limit).
EXIT_TIMEOUT = 30.0

# Whatever a user's hook raises on our thread (even SystemExit) must not end the thread.
_guard_reaper = Guard("reaper", reraise_in_strict=False, contain_all=True)


class Endable(Protocol):
    """A stream's state: ends its span once (a no-op when already ended)."""

    ended: bool

    def end(self, *, reason: str | None = ..., end_time_ns: int | None = ...) -> None: ...


class _Reaper:
    """Ends spans whose owner was garbage-collected (or closed from a finaliser), on a thread.

    Finalisers run at arbitrary points, possibly while this very thread holds a lock inside
    MLflow, so they only enqueue (``SimpleQueue.put`` is safe there) and the work happens here.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()
        self._open_lock = threading.Lock()

    def ensure_started(self) -> None:
        """``start()``, at the cost of one comparison when this process started the thread.

        For every traced call: the thread never stops on its own (its loop contains every
        error), so having started it in this process is enough; after ``fork`` the child's
        process id differs and ``start`` runs.
        """
        if self._pid != _process.pid:
            self.start()

    def start(self) -> None:
        """Start the thread if this process has none running (also after ``fork``)."""
        thread = self._thread
        if self._pid == os.getpid() and thread is not None and thread.is_alive():
            return
        with self._start_lock:
            thread = self._thread
            if self._pid == os.getpid() and thread is not None and thread.is_alive():
                return
            thread = threading.Thread(target=self._run, name="bedrock-trace-reaper", daemon=True)
            thread.start()
            self._thread, self._pid = thread, os.getpid()

    def submit(self, end: Callable[[int], None]) -> None:
        """Queue ``end(end_time_ns)``, with the time of this call as the end time."""
        self._queue.put((end, time.time_ns()))

    def track(self, state: Endable) -> None:
        """Remember an open stream, to end it at exit if the program still holds it then."""
        with self._open_lock:
            self._open.add(state)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far has been ended; True if it was."""
        if self._pid != os.getpid():
            self._drain_here()
            return True
        try:
            self.start()  # a thread that died is replaced, so the queue is always served
        except RuntimeError:  # no new thread at interpreter shutdown (Python 3.12+)
            self._drain_here()
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def at_exit(self, timeout: float = EXIT_TIMEOUT) -> None:
        """End what is queued, then every stream still open, before MLflow shuts down."""
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        with self._open_lock:
            # A stream whose read failed is ended by its own timer (a non-daemon thread, which
            # the interpreter joins right after these hooks and before atexit handlers).
            still_open = [
                state
                for state in self._open
                if not state.ended and getattr(state, "read_error", None) is None
            ]
        for state in still_open:
            self.submit(functools.partial(_end_at_exit, state))
        if still_open:
            self.flush(max(deadline - time.monotonic(), 0.1))

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
        with _guard_reaper:
            end(end_time_ns)


def _end_at_exit(state: Endable, end_time_ns: int) -> None:
    state.end(reason=EXIT_REASON, end_time_ns=end_time_ns)


class _Process:
    """This process's id, kept current across ``fork`` without a system call per read."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    def forked(self) -> None:
        self.pid = os.getpid()


_process = _Process()
if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork to follow
    os.register_at_fork(after_in_child=_process.forked)

reaper = _Reaper()


def _register_exit_flush() -> None:
    # threading's shutdown hooks run before atexit handlers (and so before MLflow's and
    # OpenTelemetry's, whenever those were registered); atexit is the fallback for an
    # interpreter without them.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(reaper.at_exit)
            return
        except RuntimeError:  # the interpreter is already shutting down
            return
    atexit.register(reaper.at_exit)


_register_exit_flush()
