"""The life of one traced API call: its per-call state, its span, and how the span ends.

The state of a call lives in the call's botocore ``context`` dict under ``CONTEXT_KEY``, from
``before-parameter-build`` until ``after-call`` / ``after-call-error`` pops it, so the span is
ended exactly once. Should the call end in a way that emits neither event (an exception out of
another ``before-call`` handler, such as an unmatched botocore ``Stubber``), the state object is
dropped with its context and its finaliser hands the still-open span to the reaper, which ends
it on a background thread: a span left open would hold back the caller's whole trace.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any, cast

import mlflow
from botocore.exceptions import ClientError
from mlflow.entities import NoOpSpan, SpanEvent, SpanStatusCode

from bedrock_trace import _keys as K
from bedrock_trace._config import TraceConfig
from bedrock_trace._guard import Guard
from bedrock_trace._operations import Operation

CONTEXT_KEY = "bedrock_trace"


class Call:
    """Per-call state: the operation, the caller's parameters, the span once opened."""

    __slots__ = ("config", "ended", "operation", "params", "span")

    def __init__(self, operation: Operation, config: TraceConfig, params: dict[str, Any] | None):
        self.operation = operation
        self.config = config
        self.params = params
        self.span: Any = None
        self.ended = False

    def __del__(self) -> None:
        if self.span is not None and not self.ended:
            self.ended = True
            reaper.submit(self.span, "the call ended without a response event", error=True)


def open_span(call: Call, params: Mapping[str, Any], context: Mapping[str, Any]) -> None:
    """Open the call's span under the caller's active MLflow span (not made current)."""
    op = call.operation
    inputs, extra = op.inputs(params, call.config)
    attributes = op.attributes(params)
    attributes[K.OPERATION] = op.name
    if region := context.get("client_region"):
        attributes[K.REGION] = region
    attributes.update(extra)
    span = mlflow.start_span_no_context(
        op.span_name,
        span_type=op.span_type(inputs),
        parent_span=mlflow.get_current_active_span(),
        inputs=inputs,
        attributes=attributes,
    )
    if isinstance(span, NoOpSpan):
        return  # tracing is disabled (mlflow.tracing.disable()) or not set up
    call.span = span


def _response_attributes(parsed: Mapping[str, Any], http_status: int | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    meta = parsed.get("ResponseMetadata")
    if isinstance(meta, Mapping):
        if request_id := meta.get("RequestId"):
            attributes[K.REQUEST_ID] = request_id
        if isinstance(attempts := meta.get("RetryAttempts"), int):
            attributes[K.RETRY_ATTEMPTS] = attempts
        http_status = http_status or meta.get("HTTPStatusCode")
    if http_status is not None:
        attributes[K.HTTP_STATUS] = http_status
    return attributes


def _headers(http_response: Any) -> Mapping[str, str]:
    headers = getattr(http_response, "headers", None)
    return headers if isinstance(headers, Mapping) else {}


def finish_response(call: Call, http_response: Any, parsed: Any, model: Any, context: Any) -> None:
    """End the span from ``after-call``: an HTTP error, or a response to map."""
    status = getattr(http_response, "status_code", None)
    if not isinstance(parsed, Mapping):
        parsed = {}
    attributes = _response_attributes(parsed, status)
    if isinstance(status, int) and status >= 300:
        error = parsed.get("Error") if isinstance(parsed.get("Error"), Mapping) else {}
        code = context.get("error_code_override") or error.get("Code")
        if code:
            attributes[K.ERROR_CODE] = code
        # The caller gets botocore's exception for this code right after after-call; record
        # the same type name and message it will carry.
        modeled = isinstance(code, str) and _is_modeled(model, code)
        event = SpanEvent(  # type: ignore[abstract]  # a dataclass; MLflow builds it the same way
            name=K.EXCEPTION_EVENT,
            attributes={
                "exception.type": code if modeled else "ClientError",
                "exception.message": str(ClientError(cast(Any, parsed), call.operation.name)),
            },
        )
        end_error(call, event, attributes)
        return
    finished = call.operation.finish(parsed, _headers(http_response), call)
    attributes.update(finished.attributes)
    end_ok(call, finished.outputs, attributes)


def _is_modeled(model: Any, code: str) -> bool:
    """Whether botocore raises a class named after ``code`` (a modeled error shape)."""
    shapes = getattr(getattr(model, "service_model", None), "error_shapes", None) or ()
    return any(shape.name == code for shape in shapes)


def finish_exception(call: Call, exception: BaseException, context: Mapping[str, Any]) -> None:
    """End the span from ``after-call-error``: the request never got an HTTP response."""
    attributes: dict[str, Any] = {}
    retries = context.get("retries")
    if isinstance(retries, Mapping) and isinstance(attempt := retries.get("attempt"), int):
        attributes[K.RETRY_ATTEMPTS] = max(attempt - 1, 0)
    end_error(call, SpanEvent.from_exception(exception), attributes)  # type: ignore[arg-type]


def end_ok(call: Call, outputs: Any, attributes: dict[str, Any]) -> None:
    """End the span with status OK, exactly once."""
    if call.ended or call.span is None:
        return
    call.ended = True
    call.span.end(outputs=outputs, attributes=attributes, status=SpanStatusCode.OK)


def end_error(call: Call, event: SpanEvent, attributes: dict[str, Any]) -> None:
    """End the span with status ERROR and an exception event, exactly once."""
    if call.ended or call.span is None:
        return
    call.ended = True
    span = call.span
    try:
        span.add_event(event)
        span.set_attributes(attributes)
    finally:
        span.end(status=SpanStatusCode.ERROR)


class _Reaper:
    """Ends spans whose owner was garbage-collected, on a daemon thread.

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

    def submit(self, span: Any, reason: str, *, error: bool) -> None:
        """Queue ``span`` to be ended as incomplete, with the time of this call as its end."""
        self._queue.put((span, reason, error, time.time_ns()))

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
        span, reason, error, end_time_ns = item
        with Guard("reaper", reraise_in_strict=False):
            span.set_attributes({K.INCOMPLETE: True, K.END_REASON: reason})
            status = SpanStatusCode.ERROR if error else SpanStatusCode.OK
            span.end(status=status, end_time_ns=end_time_ns)


reaper = _Reaper()
atexit.register(reaper.flush, 5.0)
