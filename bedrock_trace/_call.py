"""The life of one traced API call: its per-call state, its span, and how the span ends.

The state of a call lives in the call's botocore ``context`` dict under ``CONTEXT_KEY``, from
``before-parameter-build`` until ``after-call`` / ``after-call-error`` pops it, so the span is
ended exactly once. Should the call end in a way that emits neither event (an exception out of
another ``before-call`` handler, such as an unmatched botocore ``Stubber``), the state object is
dropped with its context and its finaliser hands the still-open span to the reaper, which ends
it on a background thread: a span left open would hold back the caller's whole trace.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, cast

import attrs
from botocore.exceptions import ClientError
from mlflow.entities import SpanEvent, SpanStatusCode

from bedrock_trace import _keys as K
from bedrock_trace import _models, _probe, _spans
from bedrock_trace._config import TraceConfig
from bedrock_trace._content import prepare
from bedrock_trace._operations import Operation, invoke_body_finish
from bedrock_trace._payload import json_safe
from bedrock_trace._reaper import reaper
from bedrock_trace._streams import from_aiobotocore, response_fields, wrap_stream

CONTEXT_KEY = "bedrock_trace"


class Call:
    """Per-call state: the operation, the caller's parameters, the span once opened."""

    __slots__ = ("config", "ended", "inputs", "operation", "params", "response_wire", "span")

    def __init__(self, operation: Operation, config: TraceConfig, params: dict[str, Any] | None):
        self.operation = operation
        self.config = config
        self.params = params
        self.inputs: Any = None  # as recorded (JSON-safe, bodies decoded)
        self.response_wire: bytes | None = None  # a non-streaming response's body bytes
        self.span: Any = None
        self.ended = False

    def __del__(self) -> None:
        if self.span is not None and not self.ended:
            self.ended = True
            reaper.submit(functools.partial(_end_aborted, self.span))


def _end_aborted(span: Any, end_time_ns: int) -> None:
    attributes = {K.INCOMPLETE: True, K.END_REASON: "the call ended without a response"}
    _spans.end(span, status=SpanStatusCode.ERROR, attributes=attributes, end_time_ns=end_time_ns)


def open_span(
    call: Call, params: Mapping[str, Any], context: Mapping[str, Any], wire: Any = None
) -> None:
    """Open the call's span under the caller's active MLflow span (not made current).

    Args:
        wire: the serialised request body (``before-call``'s ``params["body"]``), if any.
    """
    op = call.operation
    inputs, extra = op.inputs(params, call.config, wire)
    attributes = op.attributes(params)
    attributes[K.OPERATION] = op.name
    if region := context.get("client_region"):
        attributes[K.REGION] = region
    attributes.update(extra)
    span_type = op.span_type(inputs)  # from the full inputs, before content controls
    recorded = prepare(call.config, "inputs", inputs, attributes)
    metadata = op.trace_metadata(params) if op.trace_metadata is not None else None
    span = _spans.start(op.span_name, span_type, recorded, attributes, root_metadata=metadata)
    if span is None:
        return
    call.span, call.inputs = span, inputs
    reaper.ensure_started()  # one comparison when running; restarts it in a forked child
    _probe.check_tracking_server()  # once per tracking URI, in the background


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


def _content(http_response: Any) -> bytes | None:
    """The bytes of a non-streaming response (botocore read them already); None for stubs.

    aiobotocore's ``content`` is a coroutine: not touched (it would never be awaited).
    """
    if getattr(http_response, "raw", None) is None or from_aiobotocore(http_response):
        return None
    content = http_response.content
    return content if isinstance(content, bytes) else None


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
    op = call.operation
    headers = _headers(http_response)
    if op.stream_key is None and op.body_key is None:
        call.response_wire = _content(http_response)
    if op.stream_key is not None and op.accumulator and op.stream_finish:
        _hand_over_stream(call, op, parsed, headers, attributes)
        return
    if op.body_key is not None and from_aiobotocore(parsed.get(op.body_key)):
        _hand_over_async_body(call, op.body_key, parsed, headers, attributes)
        return
    finished = op.finish(parsed, headers, call)
    attributes.update(finished.attributes)
    end_ok(call, finished.outputs, attributes)


def _hand_over_async_body(
    call: Call, key: str, parsed: Any, headers: Mapping[str, str], attributes: dict[str, Any]
) -> None:
    """aiobotocore's invoke_model body is read with ``await``: record it as the caller reads."""
    from bedrock_trace._aio import BodyState, TracedAioStreamingBody

    def finish(data: bytes, error: BaseException | None) -> Any:
        finished = invoke_body_finish(data, error, fields, headers, call)
        return attrs.evolve(finished, attributes={**attributes, **finished.attributes})

    fields = response_fields(parsed, key)
    expected = _models._int(headers.get("content-length"))
    state = BodyState(call.span, call.config, finish, expected)
    parsed[key] = TracedAioStreamingBody(parsed[key], state)
    call.span, call.ended = None, True  # the body owns the span now


def _hand_over_stream(
    call: Call, op: Operation, parsed: Any, headers: Mapping[str, str], attributes: dict[str, Any]
) -> None:
    """Give the span to a stream wrapper, which ends it when the stream ends."""
    assert op.stream_key is not None
    assert op.accumulator is not None
    assert op.stream_finish is not None
    accumulator = op.accumulator(call.params or {}, call.config, call.span)
    stream_finish, fields, inputs = (
        op.stream_finish,
        response_fields(parsed, op.stream_key),
        call.inputs,
    )

    def finish(accumulator: Any) -> tuple[Any, dict[str, Any]]:
        # The response's attributes (request id, status, retries) are set with the rest at the
        # end: one MLflow call fewer now, and nothing that can fail before the stream is wrapped.
        outputs, extra = stream_finish(accumulator, fields=fields, headers=headers, inputs=inputs)
        return outputs, {**attributes, **extra}

    if wrap_stream(parsed, op.stream_key, call.span, call.config, accumulator, finish):
        call.span, call.ended = None, True  # the stream owns the span now
    else:  # no stream in the response (should not happen): end with what there is
        end_ok(call, json_safe(response_fields(parsed, op.stream_key), False), {})


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
    recorded: Any = None
    try:
        recorded = prepare(call.config, "outputs", outputs, attributes)
    finally:
        _spans.end(call.span, status=SpanStatusCode.OK, outputs=recorded, attributes=attributes)


def end_error(call: Call, event: SpanEvent, attributes: dict[str, Any]) -> None:
    """End the span with status ERROR and an exception event, exactly once."""
    if call.ended or call.span is None:
        return
    call.ended = True
    _spans.end(call.span, status=SpanStatusCode.ERROR, attributes=attributes, events=[event])
