"""Opening and ending MLflow spans so that a failure inside MLflow cannot leave one open.

MLflow's ``LiveSpan.end`` sets outputs, attributes and status, computes costs and runs span
processors, and only then ends the OpenTelemetry span, all inside one ``try`` that logs and
swallows: if anything before the last step fails, the span is never ended and holds back its
whole trace. Likewise ``start_span_no_context`` returns a no-op span, leaving the real one
started, if setting the inputs fails. So this module starts spans bare, sets everything in
separate guarded steps, and checks after ``end`` that the span really ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import mlflow
from mlflow.entities import NoOpSpan, SpanEvent

from bedrock_trace import _fast_path
from bedrock_trace import _keys as K
from bedrock_trace._chat import converse_with_images
from bedrock_trace._fast_path import Payload
from bedrock_trace._guard import Guard

_guard_start = Guard("span start")
_guard_set = Guard("span attributes")
_guard_end = Guard("span end")

_UNSET: Any = object()


def start(
    name: str,
    span_type: str,
    inputs: Any,
    attributes: Mapping[str, Any],
    *,
    parent: Any = _UNSET,
    start_time_ns: int | None = None,
    root_metadata: Mapping[str, str] | None = None,
) -> Any | None:
    """A span, not made current; None if tracing is off.

    Args:
        parent: the parent span; by default the caller's active span.
        start_time_ns: when the span started, if not now.
        root_metadata: trace metadata, set only when the span is the root of a new trace.
    """
    if parent is _UNSET:
        parent = mlflow.get_current_active_span()
    span = mlflow.start_span_no_context(
        name,
        span_type=span_type,
        parent_span=parent,
        start_time_ns=start_time_ns,
        metadata=dict(root_metadata) if root_metadata and parent is None else None,
    )
    if isinstance(span, NoOpSpan):
        return None  # tracing is disabled (mlflow.tracing.disable()) or not set up
    inputs, text = _unwrap(inputs)
    fast = _fast_path.path()
    if fast is not None:
        with _guard_set:
            texts, through_mlflow = fast.texts(span, attributes, fast.inputs_key, inputs, text)
            otel_span: Any = span._span
            otel_span.set_attributes(texts)
            if through_mlflow:
                span.set_inputs(inputs)
        return span
    with _guard_set:
        span.set_attributes(_values(attributes))
    with _guard_set:
        span.set_inputs(inputs)
    return span


def event_adder(span: Any) -> Callable[[str, Mapping[str, Any]], None]:
    """``add(name, attributes)``: adds a span event to ``span`` now, as
    ``span.add_event(SpanEvent(name, attributes=attributes))`` would."""
    fast = _fast_path.path()
    if fast is not None:
        return fast.event_adder(span)

    def add(name: str, attributes: Mapping[str, Any]) -> None:
        span.add_event(SpanEvent(name, attributes=dict(attributes)))  # type: ignore[abstract]

    return add


def end(
    span: Any,
    *,
    status: str,
    outputs: Any = _UNSET,
    attributes: Mapping[str, Any] | None = None,
    events: Iterable[SpanEvent] = (),
    end_time_ns: int | None = None,
) -> None:
    """Record what there is to record, then end ``span`` whatever failed on the way."""
    for event in events:
        with _guard_set:
            span.add_event(event)
    if attributes:
        attributes = dict(attributes)
        if K.TRUNCATED in attributes:
            # What was cut when the span started (the inputs) stays listed with what is cut now.
            with _guard_set:
                earlier = span.get_attribute(K.TRUNCATED) or []
                attributes[K.TRUNCATED] = [
                    *earlier,
                    *(kind for kind in attributes[K.TRUNCATED] if kind not in earlier),
                ]
    outputs, text = _unwrap(outputs)
    fast = _fast_path.path()
    if fast is not None:
        with _guard_set:
            if outputs is _UNSET:
                texts, through_mlflow = fast.texts(span, attributes or {})
            else:
                key = fast.outputs_key
                texts, through_mlflow = fast.texts(span, attributes or {}, key, outputs, text)
            if texts:
                span._span.set_attributes(texts)
            if through_mlflow:
                span.set_outputs(outputs)
    else:
        if attributes:
            with _guard_set:
                span.set_attributes(_values(attributes))
        if outputs is not _UNSET:
            with _guard_set:
                span.set_outputs(outputs)
    if getattr(span, "_attachments", None):  # MLflow's table of this span's attachments
        with _guard_set:
            _show_images(span, outputs)
    with _guard_end:
        if fast is not None:
            fast.finish(span, status, end_time_ns)
        else:
            span.end(status=status, end_time_ns=end_time_ns)
    # MLflow's end() swallows its own failures before ending the OpenTelemetry span; end that
    # span directly then, so the trace is exported rather than held back for an hour.
    otel_span = getattr(span, "_span", None)
    if otel_span is not None and otel_span.is_recording():
        with _guard_end:
            otel_span.end(end_time=end_time_ns)


def _unwrap(payload: Any) -> tuple[Any, str | None]:
    """A value to record and its JSON text, if known (see ``_fast_path.Payload``)."""
    if isinstance(payload, Payload):
        return payload.value, payload.json_text
    return payload, None


def _values(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes for MLflow's public API: the values of any ``Payload``."""
    return {
        key: value.value if isinstance(value, Payload) else value
        for key, value in attributes.items()
    }


def _show_images(span: Any, outputs: Any) -> None:
    """Give a converse span with image attachments a chat the MLflow UI shows them in."""
    if span.get_attribute(K.MESSAGE_FORMAT) != K.MESSAGE_FORMAT_BEDROCK:
        return
    messages = converse_with_images(span.inputs, None if outputs is _UNSET else outputs)
    if messages is not None:
        span.set_attribute(K.CHAT_MESSAGES, messages)
