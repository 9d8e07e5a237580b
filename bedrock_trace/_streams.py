"""Stream wrappers: every stream event becomes a span event; the span ends exactly once.

``after-call`` replaces ``parsed["stream"]`` (ConverseStream) or ``parsed["body"]``
(InvokeModelWithResponseStream) with a :class:`TracedEventStream`: still an instance of
botocore's ``EventStream``, handing the caller the very event objects botocore parsed. The
span ends, with the output rebuilt from the events so far, when the stream

- is exhausted (status OK);
- raises while being iterated (an exception event such as ``throttlingException``, a read
  timeout): status ERROR, the exception recorded, the caller gets the original exception;
- is closed (``close()``, ``with``), broken off (the iterator is closed or collected after a
  ``break``) or dropped without being read: status OK, ``bedrock_trace.incomplete``.

Endings that can happen inside a finaliser go through the reaper thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from botocore.eventstream import EventStream
from botocore.exceptions import ClientError
from mlflow.entities import SpanEvent, SpanStatusCode
from opentelemetry.sdk.trace import SpanLimits

from bedrock_trace import _keys as K
from bedrock_trace import _spans
from bedrock_trace._config import TraceConfig
from bedrock_trace._content import event_text, prepare
from bedrock_trace._guard import Guard
from bedrock_trace._reaper import reaper

_guard_event = Guard("stream event")
_guard_end = Guard("stream end")
_guard_final = Guard("stream finaliser", reraise_in_strict=False)

Finish = Callable[[Any], tuple[Any, dict[str, Any]]]


def event_limit(config: TraceConfig) -> int:
    """How many stream events one span can record.

    OpenTelemetry keeps at most ``SpanLimits.max_events`` events per span (128 unless
    ``OTEL_SPAN_EVENT_COUNT_LIMIT`` says otherwise) and silently drops the oldest beyond that;
    one place is kept free for an exception event. Events past the limit are counted in
    ``bedrock_trace.dropped_events`` instead of being recorded and then lost.
    """
    otel_limit = SpanLimits().max_events
    if otel_limit is None:
        return config.max_stream_events
    return max(0, min(config.max_stream_events, otel_limit - 1))


class StreamState:
    """What one stream has produced so far, and its span (owned by the stream from now on)."""

    __slots__ = (
        "__weakref__",
        "accumulator",
        "add_event",
        "config",
        "dropped",
        "ended",
        "finish",
        "first_output_ns",
        "limit",
        "lock",
        "plain_events",
        "read_error",
        "recorded",
        "span",
        "start_ns",
        "stopped",
        "total",
    )

    def __init__(self, span: Any, config: TraceConfig, accumulator: Any, finish: Finish) -> None:
        self.span = span
        self.config = config
        self.accumulator = accumulator
        self.finish = finish
        self.ended = False
        # Why the caller stopped reading, set at once (the span itself ends later, on the
        # reaper thread): nothing read after that, e.g. by resuming the stream, is recorded,
        # and that is how the span ends.
        self.stopped: str | None = None
        self.lock = threading.Lock()
        self.recorded = 0
        self.dropped = 0
        self.total = 0
        self.start_ns: int = span.start_time_ns
        self.first_output_ns: int | None = None
        self.limit = event_limit(config)
        self.add_event = _spans.event_adder(span)
        #: event texts are recorded as they are, up to the size cap (see event_text)
        self.plain_events = config.capture_content and config.redact is None
        #: a read that failed without the service saying so, while its span waits (see fail)
        self.read_error: BaseException | None = None
        reaper.track(self)

    def on_event(self, event: Any) -> None:
        """Record one event: a span event (up to the cap) and its share of the output."""
        # Under the lock: end() on the reaper thread waits for an event being recorded, and
        # no event is added to a span that has ended.
        with self.lock:
            if not self.ended and self.stopped is None:
                self._record(event)

    def _record(self, event: Any) -> None:
        self.total += 1
        record = self.recorded < self.limit
        name, text, output = self.accumulator.add(event, record)
        if output and self.first_output_ns is None:
            self.first_output_ns = time.time_ns()
        if record:
            self.recorded += 1
            text = text or ""
            if not self.plain_events or len(text) > self.config.max_payload_chars:
                text = event_text(self.config, text)
            self.add_event(name, {"json": text})
        else:
            self.dropped += 1

    def end(
        self,
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        end_time_ns: int | None = None,
    ) -> None:
        """End the span once: complete (no reason), incomplete (reason) or failed (error)."""
        with self.lock:
            if self.ended:
                return
            self.ended = True
            if self.stopped is not None:  # a stream resumed after a break ends as broken off
                reason, error = self.stopped, None
        if error is None and reason is not None and getattr(self.accumulator, "finished", False):
            # Every event of the response arrived (the caller stopped at the final one and
            # closed, as langchain-aws does): a complete stream, not a broken-off one.
            reason = None
        outputs: Any = None
        attributes: dict[str, Any] = {}
        events = [SpanEvent.from_exception(error)] if error is not None else []  # type: ignore[arg-type]
        try:
            outputs, attributes = self.finish(self.accumulator)
            attributes[K.STREAM_EVENTS] = self.total
            if self.dropped:
                attributes[K.DROPPED_EVENTS] = self.dropped
            if self.first_output_ns is not None:
                attributes[K.TIME_TO_FIRST_TOKEN_MS] = (self.first_output_ns - self.start_ns) / 1e6
            if reason is not None or error is not None:
                attributes[K.INCOMPLETE] = True
                attributes[K.END_REASON] = reason or f"the stream failed: {type(error).__name__}"
            if isinstance(error, ClientError):
                code = error.response.get("Error", {}).get("Code")
                if code:
                    attributes[K.ERROR_CODE] = code
            outputs = prepare(self.config, "outputs", outputs, attributes)
        finally:
            status = SpanStatusCode.ERROR if error is not None else SpanStatusCode.OK
            _spans.end(
                self.span,
                status=status,
                outputs=outputs,
                attributes=attributes,
                events=events,
                end_time_ns=end_time_ns,
            )

    def end_later(self, reason: str) -> None:
        """End from a finaliser: hand the work to the reaper thread.

        Takes no lock (a finaliser may run while this thread records an event of this very
        stream); the flag alone stops the recording at once. A stream whose read failed is
        ended by its pending failure (see ``fail``), not here.
        """
        if self.read_error is not None:
            return
        if self.stopped is None:
            self.stopped = reason
        if not self.ended:
            reaper.submit(lambda end_time_ns: self.end(reason=reason, end_time_ns=end_time_ns))

    def fail(self, error: BaseException) -> None:
        """A read raised ``error``: end the span ERROR, unless the caller was cancelling it.

        An error the service sent (``EventStreamError``) ends the span at once. A broken
        connection is told apart from a caller cutting its own read short from another thread
        (pydantic-ai shuts the socket down, then closes the stream) only by that ``close()``
        following: so the span waits ``READ_ERROR_GRACE_S`` for it, then ends ERROR with the
        time of the failure.
        """
        if isinstance(error, ClientError) or not isinstance(error, Exception):
            self.end(error=error)
            return
        end_time_ns = time.time_ns()
        self.read_error = error
        timer = threading.Timer(READ_ERROR_GRACE_S, self._fail_now, args=(error, end_time_ns))
        with _pending_lock:
            _pending.add(timer)
        timer.start()

    def _fail_now(self, error: BaseException, end_time_ns: int) -> None:
        try:
            with _guard_final:
                self.end(error=error, end_time_ns=end_time_ns)
        finally:
            with _pending_lock:
                _pending.discard(threading.current_thread())

    def close_reason(self) -> str:
        """Why a span ends when the caller closes its stream now."""
        if self.read_error is not None:
            return f"{CANCELLED} (the read failed with {type(self.read_error).__name__})"
        return "the caller closed the stream before its end"


#: How long a stream whose read failed waits for the caller's ``close()`` (see ``fail``).
READ_ERROR_GRACE_S = 0.25
CANCELLED = "the caller cancelled the read and closed the stream"
# The timers of failed reads still waiting; non-daemon threads, so interpreter exit waits for
# them (before atexit handlers, MLflow's export included).
_pending: set[threading.Timer] = set()
_pending_lock = threading.Lock()


def flush_pending(timeout: float = 10.0) -> None:
    """Wait for the spans of failed reads still waiting out their grace period."""
    deadline = time.monotonic() + timeout
    while True:
        with _pending_lock:
            timers = list(_pending)
        if not timers:
            return
        for timer in timers:
            timer.join(max(0.0, deadline - time.monotonic()))
        if time.monotonic() >= deadline:
            return


class StreamWrapper:
    """What the sync and async stream wrappers share: closing, delegation, finalising.

    Wrappers delegate to the stream botocore (or aiobotocore) created rather than re-parsing:
    the caller receives the very event dicts it produced. The stream class's ``__init__`` is
    deliberately not called; its public methods are overridden, and other attributes are
    looked up on the wrapped stream.
    """

    _bt_stream: Any
    _bt_state: StreamState

    def __init__(self, stream: Any, state: StreamState) -> None:
        # The stream's own instance attributes, shared (not copied): code that reaches into
        # ``vars(stream)`` (pydantic-ai shuts a blocked read down through ``_raw_stream``)
        # finds what it would find on botocore's stream.
        self.__dict__.update(vars(stream))
        self._bt_stream = stream
        self._bt_state = state

    def close(self) -> None:
        """Close the underlying stream; a span not yet ended ends as incomplete."""
        try:
            with _guard_end:
                self._bt_state.end(reason=self._bt_state.close_reason())
        finally:
            self._bt_stream.close()

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not found on the wrapper (e.g. botocore's private ones).
        if name.startswith("_bt_"):
            raise AttributeError(name)
        return getattr(self._bt_stream, name)

    def __del__(self) -> None:
        state = self.__dict__.get("_bt_state")
        if state is not None and not state.ended:
            with _guard_final:
                state.end_later("the stream was dropped before its end")


class TracedEventStream(StreamWrapper, EventStream):  # type: ignore[type-arg]
    """A botocore ``EventStream`` that records what passes through it."""

    def __iter__(self) -> Iterator[Any]:
        return self._bt_events()

    def _bt_events(self) -> Iterator[Any]:
        state = self._bt_state
        try:
            on_event = state.on_event
            for event in self._bt_stream:
                try:
                    on_event(event)
                except BaseException as error:
                    if not _guard_event.contained(error):
                        raise
                yield event
        except GeneratorExit:
            # The caller broke off and the iterator was closed (often by the garbage
            # collector, so this may run in a finaliser): end through the reaper.
            with _guard_final:
                state.end_later("the caller stopped reading the stream before its end")
            raise
        except BaseException as error:
            with _guard_end:
                state.fail(error)
            raise
        with _guard_end:
            state.end()

    def get_initial_response(self) -> Any:
        return self._bt_stream.get_initial_response()

    def __enter__(self) -> TracedEventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def wrap_stream(
    parsed: dict[str, Any],
    key: str,
    span: Any,
    config: TraceConfig,
    accumulator: Any,
    finish: Finish,
) -> bool:
    """Replace ``parsed[key]`` with a traced stream; False if there is no stream to wrap."""
    stream = parsed.get(key)
    if not isinstance(stream, EventStream):
        return False
    state = StreamState(span, config, accumulator, finish)
    if from_aiobotocore(stream):
        from bedrock_trace._aio import TracedAioEventStream

        parsed[key] = TracedAioEventStream(stream, state)
    else:
        parsed[key] = TracedEventStream(stream, state)
    return True


def from_aiobotocore(value: Any) -> bool:
    """Whether ``value`` is one of aiobotocore's async objects (without importing it)."""
    return type(value).__module__.startswith("aiobotocore.")


def response_fields(parsed: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The response's other fields (``contentType``, ...), for the rebuilt outputs."""
    return {k: v for k, v in parsed.items() if k not in (key, "ResponseMetadata")}
