"""Helpers for testing code that calls Bedrock with ``bedrock_trace`` registered.

- :func:`capture_traces`: collect finished MLflow traces in memory. Works with
  ``mlflow-tracing`` alone: no tracking server, no tracking URI, nothing written to disk.
- :func:`strict_guard`: make errors inside ``bedrock_trace`` fail the test instead of being
  logged and swallowed.
- :func:`converse_response`, :func:`invoke_model_response`: response dicts for
  ``botocore.stub.Stubber``.
- :class:`HttpStub`: answers requests with real HTTP responses (status, headers, body bytes)
  from a ``before-send`` handler, so botocore's parsing, retries and headers run for real.

Example::

    from botocore.stub import Stubber
    from bedrock_trace.testing import capture_traces, converse_response

    with capture_traces() as capture, Stubber(client) as stubber:
        stubber.add_response("converse", converse_response("Hi!"))
        client.converse(modelId="amazon.nova-lite-v1:0", messages=[...])
    (span,) = capture.spans

``capture_traces`` installs its own span processor in MLflow's tracer provider for the
duration of the block (and restores the previous provider after); it relies on MLflow
internals that are stable across the supported ``mlflow-tracing`` versions.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import mlflow
import urllib3
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody
from mlflow.entities import Span, Trace, TraceInfo, TraceLocation, TraceState
from mlflow.tracing import provider as _mlflow_provider
from mlflow.tracing.processor.base_mlflow import BaseMlflowSpanProcessor
from mlflow.tracing.trace_manager import InMemoryTraceManager
from mlflow.tracing.utils import generate_trace_id_v3
from mlflow.tracking._tracking_service import utils as _tracking_utils
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from bedrock_trace import _guard, _probe
from bedrock_trace._eventstream import (
    chunk_event,
    encode_message,
    error_message,
    event_message,
    exception_message,
)
from bedrock_trace._reaper import reaper
from bedrock_trace._streams import flush_pending

__all__ = [
    "HttpStub",
    "TraceCapture",
    "capture_traces",
    "chunk_event",
    "converse_response",
    "converse_stream_messages",
    "encode_message",
    "error_message",
    "event_message",
    "exception_message",
    "expect_internal_errors",
    "flush",
    "invoke_model_response",
    "strict_guard",
]

_CAPTURE_EXPERIMENT_ID = "0"
# Port 9 is "discard"; nothing is ever sent there (see capture_traces).
_PLACEHOLDER_TRACKING_URI = "http://127.0.0.1:9"


class _MemoryExporter(SpanExporter):
    def __init__(self) -> None:
        self.traces: list[Trace] = []
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        manager = InMemoryTraceManager.get_instance()  # type: ignore[no-untyped-call]
        for span in spans:
            if span.parent is not None:
                continue
            managed = manager.pop_trace(span.context.trace_id)
            if managed is not None:
                with self._lock:
                    self.traces.append(managed.trace)
        return SpanExportResult.SUCCESS


class _MemoryProcessor(BaseMlflowSpanProcessor):
    """MLflow's span bookkeeping, with traces kept in memory instead of logged."""

    def _start_trace(self, root_span: Any) -> TraceInfo:
        info = TraceInfo(
            trace_id=generate_trace_id_v3(root_span),
            trace_location=TraceLocation.from_experiment_id(_CAPTURE_EXPERIMENT_ID),
            request_time=root_span.start_time // 1_000_000,
            execution_duration=None,
            state=TraceState.IN_PROGRESS,
            trace_metadata={},
            tags={},
        )
        self._trace_manager.register_trace(root_span.context.trace_id, info)
        return info


class TraceCapture:
    """The traces finished while :func:`capture_traces` was active."""

    def __init__(self, exporter: _MemoryExporter) -> None:
        self._exporter = exporter

    @property
    def traces(self) -> list[Trace]:
        """Finished traces, in the order their root spans ended."""
        return list(self._exporter.traces)

    @property
    def spans(self) -> list[Span]:
        """Every span of every finished trace, trace by trace, in start order."""
        return [span for trace in self.traces for span in trace.data.spans]

    def open_traces(self) -> int:
        """How many traces MLflow still holds open in this process (0 when all ended)."""
        manager = InMemoryTraceManager.get_instance()  # type: ignore[no-untyped-call]
        return len(manager._traces)

    def clear(self) -> None:
        """Forget the traces captured so far."""
        with self._exporter._lock:
            self._exporter.traces.clear()


@contextlib.contextmanager
def capture_traces(tracer_provider: TracerProvider | None = None) -> Iterator[TraceCapture]:
    """Collect the MLflow traces finished inside the block, in memory.

    Args:
        tracer_provider: an OpenTelemetry SDK ``TracerProvider`` to install (the in-memory
            processor is added to it), for tests that bring processors or tracers of their own;
            a new one when None.
    """
    # With mlflow-tracing alone and no tracking URI, MLflow fails while ending spans (it asks
    # for a default local store it does not ship). A URI that is never contacted avoids that;
    # our processor exports nowhere.
    placeholder_uri = not _tracking_utils.is_tracking_uri_set()  # type: ignore[no-untyped-call]
    if placeholder_uri:
        _probe.ignore(_PLACEHOLDER_TRACKING_URI)
        mlflow.set_tracking_uri(_PLACEHOLDER_TRACKING_URI)
    exporter = _MemoryExporter()
    tracer_provider = tracer_provider or TracerProvider()
    tracer_provider.add_span_processor(_MemoryProcessor(exporter, export_metrics=False))
    wrapper = _mlflow_provider.provider
    previous, previous_done = wrapper.get(), wrapper.once._done
    wrapper.set(tracer_provider)
    wrapper.once._done = True
    try:
        yield TraceCapture(exporter)
    finally:
        flush()
        if previous is None:
            wrapper.reset()
        else:
            wrapper.set(previous)
            wrapper.once._done = previous_done
        tracer_provider.shutdown()
        if placeholder_uri:
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None unsets it


def flush(timeout: float = 10.0) -> None:
    """Wait until spans of garbage-collected calls and streams have been ended.

    Also waits for streams whose read failed mid-way: their span ends a quarter of a second
    after the failure (see docs/streaming.md).
    """
    flush_pending(timeout)
    reaper.flush(timeout)


@contextlib.contextmanager
def strict_guard() -> Iterator[None]:
    """Make internal errors of ``bedrock_trace`` visible to a test.

    Inside the block, an error of ours inside a handler is re-raised (so the API call fails
    with it), and every error of ours, wherever it happened, fails the block on exit.
    """
    state = _guard.strict
    saved_enabled, saved_errors = state.enabled, state.errors
    state.enabled, state.errors = True, []
    try:
        yield
        flush()
        if state.errors:
            where, error = state.errors[0]
            raise AssertionError(
                f"bedrock_trace had {len(state.errors)} internal error(s); first in {where}: "
                f"{type(error).__name__}: {error}"
            ) from error
    finally:
        state.enabled, state.errors = saved_enabled, saved_errors


@contextlib.contextmanager
def expect_internal_errors() -> Iterator[list[tuple[str, BaseException]]]:
    """Inside :func:`strict_guard`, let internal errors be contained as in production.

    Yields the list the errors of the block are collected in, for the test to inspect. The
    first error of each kind in the block is logged at WARNING, as in a fresh process.
    """
    state = _guard.strict
    saved_enabled, saved_errors = state.enabled, state.errors
    collected: list[tuple[str, BaseException]] = []
    state.enabled, state.errors = False, collected
    _guard.forget_seen()
    try:
        yield collected
    finally:
        state.enabled, state.errors = saved_enabled, saved_errors


# --- stubbed responses ---------------------------------------------------------------------


def converse_response(
    text: str | None = "Hello!",
    *,
    tool_uses: Sequence[Mapping[str, Any]] = (),
    stop_reason: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 5,
    cache_read_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    latency_ms: int = 123,
) -> dict[str, Any]:
    """A Converse response, as ``Stubber.add_response("converse", ...)`` takes it.

    Args:
        text: the assistant's text block (None for none).
        tool_uses: ``{"toolUseId", "name", "input"}`` mappings, one toolUse block each.
        stop_reason: defaults to ``tool_use`` when there are tool uses, else ``end_turn``.
    """
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"text": text})
    content.extend({"toolUse": dict(tool_use)} for tool_use in tool_uses)
    usage: dict[str, int] = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
    }
    if cache_read_tokens is not None:
        usage["cacheReadInputTokens"] = cache_read_tokens
    if cache_write_tokens is not None:
        usage["cacheWriteInputTokens"] = cache_write_tokens
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason or ("tool_use" if tool_uses else "end_turn"),
        "usage": usage,
        "metrics": {"latencyMs": latency_ms},
    }


def invoke_model_response(body: Any, *, content_type: str = "application/json") -> dict[str, Any]:
    """An InvokeModel response for the Stubber: ``body`` (a dict is JSON-encoded) as a stream."""
    if isinstance(body, str):
        data = body.encode("utf-8")
    elif isinstance(body, (bytes, bytearray)):
        data = bytes(body)
    else:
        data = json.dumps(body).encode("utf-8")
    return {"body": StreamingBody(io.BytesIO(data), len(data)), "contentType": content_type}


def converse_stream_messages(
    text: str | None = "Hello!",
    *,
    tool_uses: Sequence[Mapping[str, Any]] = (),
    stop_reason: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 5,
    latency_ms: int = 123,
    pieces: int = 3,
) -> list[bytes]:
    """The event-stream messages of a ConverseStream response, for :meth:`HttpStub.add_stream`.

    The text arrives in ``pieces`` deltas; each tool use is a block of its own whose input JSON
    arrives in two deltas. Ends with ``messageStop`` and ``metadata`` (usage and latency).
    """
    messages = [event_message("messageStart", {"role": "assistant"})]
    index = 0
    if text is not None:
        size = max(1, -(-len(text) // pieces))
        for start in range(0, max(len(text), 1), size):
            delta = {"delta": {"text": text[start : start + size]}, "contentBlockIndex": index}
            messages.append(event_message("contentBlockDelta", delta))
        messages.append(event_message("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    for tool_use in tool_uses:
        block_start = {"toolUse": {"toolUseId": tool_use["toolUseId"], "name": tool_use["name"]}}
        messages.append(
            event_message("contentBlockStart", {"start": block_start, "contentBlockIndex": index})
        )
        encoded = json.dumps(tool_use.get("input", {}))
        half = len(encoded) // 2
        for part in (encoded[:half], encoded[half:]):
            delta = {"delta": {"toolUse": {"input": part}}, "contentBlockIndex": index}
            messages.append(event_message("contentBlockDelta", delta))
        messages.append(event_message("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    reason = stop_reason or ("tool_use" if tool_uses else "end_turn")
    messages.append(event_message("messageStop", {"stopReason": reason}))
    usage = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
    }
    messages.append(
        event_message("metadata", {"usage": usage, "metrics": {"latencyMs": latency_ms}})
    )
    return messages


class HttpStub:
    """Answer a client's requests with queued HTTP responses, from ``before-send``.

    Nothing leaves the process; botocore still signs, retries and parses for real. Queue a
    response with :meth:`add` (status, headers, body) or an exception with :meth:`add_error`
    (raised where the HTTP send would have failed). Requests seen are kept in ``requests``
    (unless ``keep_requests=False``, for long runs).
    """

    def __init__(self, client: Any, *, keep_requests: bool = True) -> None:
        self._client = client
        self._queue: deque[Any] = deque()
        self._keep_requests = keep_requests
        self.requests: list[Any] = []

    def add(
        self,
        body: Any = b"{}",
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        request_id: str = "00000000-0000-4000-8000-000000000000",
    ) -> HttpStub:
        """Queue a response; a dict or list body is JSON-encoded."""
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode("utf-8")
        all_headers = {
            "x-amzn-requestid": request_id,
            "content-type": "application/json",
            "content-length": str(len(body)),
        }
        all_headers.update(headers or {})
        self._queue.append((status, all_headers, bytes(body)))
        return self

    def add_stream(
        self,
        messages: Sequence[bytes],
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str = "00000000-0000-4000-8000-000000000000",
    ) -> HttpStub:
        """Queue a streaming response: encoded event-stream ``messages``, concatenated.

        Build the messages with :func:`event_message`, :func:`chunk_event`,
        :func:`exception_message` (or :func:`converse_stream_messages`).
        """
        all_headers = {"content-type": "application/vnd.amazon.eventstream"}
        all_headers.update(headers or {})
        return self.add(b"".join(messages), headers=all_headers, request_id=request_id)

    def add_error(self, error: BaseException) -> HttpStub:
        """Queue an exception to be raised instead of sending the request."""
        self._queue.append(error)
        return self

    def pending(self) -> int:
        """Responses queued and not yet used."""
        return len(self._queue)

    def _on_before_send(self, request: Any, **kwargs: Any) -> AWSResponse:
        if self._keep_requests:
            self.requests.append(request)
        if not self._queue:
            raise AssertionError(f"HttpStub: no response queued for {request.url}")
        item = self._queue.popleft()
        if isinstance(item, BaseException):
            raise item
        status, headers, body = item
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(body), headers=headers, status=status, preload_content=False
        )
        return AWSResponse(request.url, status, headers, raw)

    def _event(self) -> str:
        # The client's own service: bedrock-runtime, bedrock-agent-runtime, ...
        return f"before-send.{self._client.meta.service_model.service_id.hyphenize()}"

    def __enter__(self) -> HttpStub:
        self._client.meta.events.register(
            self._event(), self._on_before_send, unique_id=f"http-stub-{id(self)}"
        )
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._client.meta.events.unregister(self._event(), unique_id=f"http-stub-{id(self)}")
