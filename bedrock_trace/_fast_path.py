"""A cheaper way into MLflow for the spans bedrock_trace makes, storing the same bytes.

MLflow's public span API serialises each attribute in its own call (a new JSON encoder and an
OpenTelemetry lock each time), walks inputs and outputs twice for attachments (as objects, then
again after re-parsing their JSON), and its ``LiveSpan.end`` runs steps that cannot apply here:
from mlflow-tracing 3.16 on, two imports of ``mlflow.agent.hint`` that fail at every span end
when that module is absent (it is part of the full ``mlflow`` package only).

For values that are plain JSON, which is what bedrock_trace records, the same span is made with
fewer steps: each attribute serialised once, exactly as MLflow's ``dump_span_attribute_value``
would, and set on the OpenTelemetry span in one call, in the order the public API sets them;
attachment extraction skipped only where its triggers cannot occur; ``end``'s steps replayed in
MLflow's order without the failing imports.

This leans on MLflow internals, so it is used only where it was checked: the names
``LiveSpan.end``, ``set_inputs``, ``set_outputs`` and ``add_event`` use must be those of a known
version (mlflow-tracing 3.10 to 3.17), the triggers of MLflow's base64 extraction must be the
known ones, and every function it calls must exist. Otherwise, or with
``BEDROCK_TRACE_MLFLOW_FAST_PATH=0``, bedrock_trace uses the public API.
tests/test_fast_path.py compares the spans both ways make, attribute by attribute.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import json.encoder
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from bedrock_trace._guard import Guard

ENV_SWITCH = "BEDROCK_TRACE_MLFLOW_FAST_PATH"

_guard = Guard("MLflow fast path")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The names (co_names) each checked MLflow function uses, per version.
_END_3_10 = _words(
    "DEBUG ERROR Exception OK SpanStatus SpanStatusCode _logger _span apply_span_processors "
    "end isEnabledFor logging set_attributes set_outputs set_span_cost_attribute set_status "
    "should_compute_cost_client_side span_id status status_code warning"
)
#: 3.13 to 3.15: a default log level is stamped at end.
_END_3_13 = _END_3_10 | _words(
    "LOG_LEVEL SpanAttributeKey _attributes default_log_level_for_span_type get int set span_type"
)
#: 3.16 and 3.17: agent hints, imported from the full mlflow package's ``mlflow.agent``.
_END_3_16 = _END_3_13 | _words(
    "LLM RETRIEVER SpanType TOOL inputs outputs name maybe_warn_agent "
    "maybe_warn_local_tracking_for_databricks mlflow.agent.hint"
)
_SET_PLAIN = frozenset({"SpanAttributeKey", "set_attribute"})
#: 3.11: Attachment objects are extracted; 3.12 on: base64 content too.
_SET_OBJECTS = _SET_PLAIN | {"_extract_attachments"}
_SET_BASE64 = _SET_OBJECTS | {"_extract_attachments_from_serialized", "_should_extract_base64"}
_EVENT_3_10 = frozenset({"_span", "add_event", "attributes", "name", "timestamp"})
_EVENT_3_13 = _EVENT_3_10 | frozenset(
    ["ERROR", "LOG_LEVEL", "SpanAttributeKey", "SpanLogLevel", "_attributes", "get", "int", "set"]
)
#: The strings of ``_try_convert_structured_content`` (3.12 to 3.17): the shapes it converts.
_STRUCTURED = _words(
    "application/octet-stream audio audio/ audio/mpeg audio/wav b64_json base64 bytes data "
    "format image image/ image/png image_generation_call inline_data input_audio media_type "
    "mime_type mlflow-attachment:// mp3 output_format png result source type wav"
)
#: Text that must be in a value's JSON for MLflow's base64 extraction to change it: a data URI,
#: or a key of one of the shapes above. Absent all of them, extraction is the identity.
_TRIGGERS = (
    ";base64,",
    '"image"',
    '"source"',
    '"audio"',
    '"input_audio"',
    '"b64_json"',
    '"inline_data"',
    '"image_generation_call"',
)

# Serialises plain JSON exactly as MLflow's encoder does (its ``default`` is never reached) and
# raises TypeError on anything else, which then takes MLflow's own path.
_PLAIN = json.JSONEncoder(ensure_ascii=False)
# What _PLAIN.encode does with a str and with an int, without its other checks.
_encode_str = json.encoder.encode_basestring


def json_text(value: Any) -> str | None:
    """``json.dumps(value, ensure_ascii=False)``, which is what MLflow stores for plain JSON;
    None when ``value`` is not plain JSON (MLflow's encoder would have to convert something).
    """
    try:
        return _PLAIN.encode(value)
    except (TypeError, ValueError, RecursionError):
        return None


@attrs.frozen
class Payload:
    """Span inputs or outputs (or a chat attribute) as they may be recorded, with their JSON
    text when it was made (``json.dumps(value, ensure_ascii=False)``: what MLflow stores for
    plain JSON), so that the span does not serialise them a second time."""

    value: Any
    json_text: str | None = None


def _names(function: Any) -> frozenset[str]:
    return frozenset(function.__code__.co_names)


@attrs.frozen
class FastPath:
    """MLflow's steps for one checked version, resolved where ``LiveSpan`` resolves them."""

    inputs_key: str
    outputs_key: str
    log_level_key: str | None
    #: set_inputs / set_outputs extract base64 content (3.12 on)
    base64: bool
    #: end() imports mlflow.agent.hint, and that module exists: finish through MLflow
    hints: bool
    #: add_event raises the span's log level on an "exception" event (3.13 on)
    event_level: bool
    dump: Any
    apply_span_processors: Any
    should_compute_cost: Any
    set_cost: Any
    default_log_level: Any

    def texts(
        self,
        span: Any,
        attributes: Mapping[str, Any],
        key: str | None = None,
        value: Any = None,
        text: str | None = None,
    ) -> tuple[dict[str, str], bool]:
        """The attributes and ``value`` (under ``key``, if given) as MLflow would store them.

        Args:
            text: ``json_text(value)``, if it was made already.

        Returns:
            the texts, in the order the public API sets them, and whether ``value`` must still
            be set through MLflow (it is not plain JSON, or MLflow may extract from it).
        """
        texts = {name: self.text(item) for name, item in attributes.items()}
        if key is None:
            return texts, False
        if text is None:
            text = json_text(value)
            if text is None:  # MLflow's encoder decides
                return texts, True
        if self.base64 and any(t in text for t in _TRIGGERS) and span._should_extract_base64():
            return texts, True
        texts[key] = text
        return texts, False

    def text(self, value: Any) -> str:
        """One attribute value as MLflow stores it."""
        kind = type(value)
        if kind is str:  # most attributes: what the encoder itself does with a str
            return _encode_str(value)
        if kind is int:
            return int.__repr__(value)
        if kind is Payload:  # content serialised already, when its size was measured
            return value.json_text or self.text(value.value)
        text = json_text(value)
        return str(self.dump(value)) if text is None else text

    def finish(self, span: Any, status: str, end_time_ns: int | None) -> None:
        """``LiveSpan.end(status=status)``'s remaining steps, in its order."""
        if self.hints or status not in ("OK", "ERROR"):
            span.end(status=status, end_time_ns=end_time_ns)
            return
        span.set_status(status)
        if self.should_compute_cost():
            self.set_cost(span)
        if self.log_level_key is not None and span._attributes.get(self.log_level_key) is None:
            span._attributes.set(self.log_level_key, int(self.default_log_level(span.span_type)))
        self.apply_span_processors(span)
        span._span.end(end_time=end_time_ns)

    def event_adder(self, span: Any) -> Callable[[str, Mapping[str, Any]], None]:
        """``add(name, attributes)``: ``span.add_event(SpanEvent(name, attributes=...))``
        without the SpanEvent (the same timestamp: SpanEvent's default)."""
        add_otel_event, now, event_level = span._span.add_event, time.time, self.event_level

        def add(name: str, attributes: Mapping[str, Any]) -> None:
            if name == "exception" and event_level:  # MLflow raises the span's log level
                from mlflow.entities import SpanEvent

                span.add_event(SpanEvent(name, attributes=dict(attributes)))  # type: ignore[abstract]
                return
            add_otel_event(name, attributes, int(now() * 1e9))

        return add


_ABSENT: Any = object()
_path: FastPath | object | None = _ABSENT


def path() -> FastPath | None:
    """The fast path for the installed MLflow, or None to use its public API."""
    global _path
    if _path is _ABSENT:
        found = None
        if os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off"):
            with _guard:
                found = _detect()
        _path = found
    return _path  # type: ignore[return-value]


def reset() -> None:
    """Check again at the next span (tests switch the environment variable)."""
    global _path
    _path = _ABSENT


def _detect() -> FastPath | None:
    module: Any = importlib.import_module("mlflow.entities.span")

    live = module.LiveSpan
    end, inputs, outputs = _names(live.end), _names(live.set_inputs), _names(live.set_outputs)
    if end not in (_END_3_10, _END_3_13, _END_3_16):
        return None
    setters = {_SET_PLAIN, _SET_OBJECTS, _SET_BASE64}
    if inputs - {"INPUTS"} not in setters or outputs - {"OUTPUTS"} not in setters:
        return None
    if _names(live.add_event) not in (_EVENT_3_10, _EVENT_3_13):
        return None
    base64 = "_should_extract_base64" in inputs
    if base64:
        strings = live._try_convert_structured_content.__code__.co_consts
        if {c for c in strings if isinstance(c, str)} != _STRUCTURED:
            return None
    keys = module.SpanAttributeKey
    log_level = end != _END_3_10
    hints = end == _END_3_16 and importlib.util.find_spec("mlflow.agent") is not None
    return FastPath(
        inputs_key=keys.INPUTS,
        outputs_key=keys.OUTPUTS,
        log_level_key=keys.LOG_LEVEL if log_level else None,
        base64=base64,
        hints=hints,
        event_level="LOG_LEVEL" in _names(live.add_event),
        dump=module.dump_span_attribute_value,
        apply_span_processors=module.apply_span_processors,
        should_compute_cost=module.should_compute_cost_client_side,
        set_cost=module.set_span_cost_attribute,
        default_log_level=getattr(module, "default_log_level_for_span_type", None),
    )
