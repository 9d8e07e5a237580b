"""One mapper per Bedrock Runtime operation, looked up by operation name.

A mapper says how the caller's parameters become span inputs and attributes, and how a
successful response becomes span outputs, usage and attributes. Errors, request ids, retries
and the span's life are common to every operation and live in ``_call``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import IO, Any, cast

import attrs
from botocore.response import StreamingBody

from bedrock_trace import _keys as K
from bedrock_trace import _models
from bedrock_trace._accumulators import ChunkAccumulator, ConverseAccumulator
from bedrock_trace._chat import chat_messages
from bedrock_trace._config import TraceConfig
from bedrock_trace._payload import decode_json_body, json_safe

Attributes = dict[str, Any]


@attrs.frozen
class Finished:
    """What a mapper extracted from a successful response."""

    outputs: Any
    attributes: Attributes


def _without_metadata(parsed: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in parsed.items() if key != "ResponseMetadata"}


# --- inputs --------------------------------------------------------------------------------


# Blob members are serialised under these keys in Bedrock Runtime's JSON requests and
# responses (content block sources, reasoning's redactedContent).
_BLOB_MARKERS = (b'"bytes"', b'"redactedContent"')


def plain_json(wire: Any) -> bool:
    """Whether a serialised JSON request or response body holds no binary member.

    Then its parsed form is plain JSON and needs no walk to be recorded. A marker inside text
    would be escaped (``\\"bytes\\"``), so a false "no" is impossible; a false "yes" only
    costs the walk. Timestamps never travel in these JSON bodies (only ListAsyncInvokes takes
    them, in its query string, and its body is empty: the walk runs).
    """
    return (
        isinstance(wire, (bytes, bytearray))
        and len(wire) > 2
        and not any(marker in wire for marker in _BLOB_MARKERS)
    )


def _plain_inputs(
    params: Mapping[str, Any], config: TraceConfig, wire: Any = None
) -> tuple[Any, Attributes]:
    if plain_json(wire):
        return params, {}  # already a shallow copy of the caller's arguments
    return json_safe(params, config.include_binary), {}


def _read_request_body(body: Any, limit: int) -> bytes | bytearray | str | None:
    """The bytes of an invoke_model request body, without consuming a caller's stream."""
    if isinstance(body, (bytes, bytearray, str)):
        return body
    if hasattr(body, "read") and hasattr(body, "seek") and hasattr(body, "tell"):
        position = body.tell()
        try:
            data = body.read(limit + 1)
        finally:
            body.seek(position)
        return data if isinstance(data, (bytes, str)) else None
    return None


# How much of a file-like invoke_model request body is read to record it.
_BODY_READ_LIMIT = 10 * 1024 * 1024


def _body_preview(raw: bytes | bytearray | str, chars: int, read_limit: int) -> dict[str, Any]:
    text = raw if isinstance(raw, str) else bytes(raw[:chars]).decode("utf-8", errors="replace")
    return {
        K.TRUNCATED: {"over_chars": read_limit, "kept_chars": min(chars, len(text))},
        "preview": text[:chars],
    }


def _invoke_inputs(
    params: Mapping[str, Any], config: TraceConfig, wire: Any = None
) -> tuple[Any, Attributes]:
    inputs = dict(params)
    attributes: Attributes = {}
    body = params.get("body")
    limit = max(config.max_raw_body_chars, _BODY_READ_LIMIT)
    raw = _read_request_body(body, limit)
    if raw is None:
        if body is not None:
            inputs["body"] = json_safe(body, config.include_binary)
    elif len(raw) > limit:
        # Only the start of a file-like body was read: decoding it would call valid JSON
        # invalid. Recorded as a preview, marked like any payload over the cap.
        inputs["body"] = _body_preview(raw, config.max_raw_body_chars, limit)
        attributes[K.TRUNCATED] = ["inputs"]
    else:
        inputs["body"], reason = decode_json_body(
            raw, include_binary=config.include_binary, max_raw_chars=config.max_raw_body_chars
        )
        if reason:
            attributes[K.BODY_ERROR] = f"request {reason}"
    for key, value in inputs.items():
        if key != "body":
            inputs[key] = json_safe(value, config.include_binary)
    return inputs, attributes


def _count_tokens_inputs(
    params: Mapping[str, Any], config: TraceConfig, wire: Any = None
) -> tuple[Any, Attributes]:
    # CountTokens wraps an InvokeModel body as a blob: show it decoded, as for invoke_model.
    body = _models._dig(params, "input", "invokeModel", "body")
    if not isinstance(body, (bytes, bytearray, str)):
        return _plain_inputs(params, config, wire)
    decoded, reason = decode_json_body(
        body, include_binary=config.include_binary, max_raw_chars=config.max_raw_body_chars
    )
    inputs = json_safe(params, config.include_binary)
    inputs = {
        **inputs,
        "input": {**inputs["input"], "invokeModel": dict(inputs["input"]["invokeModel"])},
    }
    inputs["input"]["invokeModel"]["body"] = decoded
    return inputs, ({K.BODY_ERROR: f"request {reason}"} if reason else {})


# --- start attributes -----------------------------------------------------------------------


def _model_attributes(params: Mapping[str, Any]) -> Attributes:
    model_id = params.get("modelId")
    if not isinstance(model_id, str):
        return {}
    attributes: Attributes = {K.MODEL: model_id}
    if provider := _models.provider_of(model_id):
        attributes[K.PROVIDER] = provider
    return attributes


def chat_tools(tool_config: Any) -> list[dict[str, Any]]:
    """Converse ``toolConfig.tools`` in MLflow's chat-tool form (OpenAI function style)."""
    tools = tool_config.get("tools") if isinstance(tool_config, Mapping) else None
    converted = []
    for tool in tools if isinstance(tools, list) else ():
        spec = tool.get("toolSpec") if isinstance(tool, Mapping) else None
        if not isinstance(spec, Mapping):
            continue  # cachePoint and system tools carry no function definition
        function: dict[str, Any] = {"name": spec.get("name")}
        if spec.get("description"):
            function["description"] = spec["description"]
        schema = _models._dig(spec, "inputSchema", "json")
        if schema is not None:
            function["parameters"] = schema
        converted.append({"type": "function", "function": function})
    return converted


def _converse_attributes(params: Mapping[str, Any]) -> Attributes:
    attributes = _model_attributes(params)
    attributes[K.MESSAGE_FORMAT] = K.MESSAGE_FORMAT_BEDROCK
    if tools := chat_tools(params.get("toolConfig")):
        attributes[K.CHAT_TOOLS] = tools
    return attributes


# --- outputs -------------------------------------------------------------------------------


def _plain_finish(parsed: Mapping[str, Any], headers: Mapping[str, str], call: Any) -> Finished:
    return Finished(json_safe(_without_metadata(parsed), call.config.include_binary), {})


def converse_finish_attributes(response: Mapping[str, Any]) -> Attributes:
    """Usage, stop reason and Bedrock's latency out of a Converse-shaped response."""
    attributes: Attributes = {}
    if usage := _models.converse_usage(response.get("usage")):
        attributes[K.CHAT_USAGE] = usage
    if isinstance(stop := response.get("stopReason"), str):
        attributes[K.STOP_REASON] = stop
    if (latency := _models._int(_models._dig(response, "metrics", "latencyMs"))) is not None:
        attributes[K.LATENCY_MS] = latency
    return attributes


def _converse_finish(parsed: Mapping[str, Any], headers: Mapping[str, str], call: Any) -> Finished:
    outputs = _without_metadata(parsed)
    if not plain_json(call.response_wire):
        outputs = json_safe(outputs, call.config.include_binary)
    return Finished(outputs, converse_finish_attributes(parsed))


class BufferedBody(StreamingBody):
    """The invoke_model response body, already read, handed back through the same API.

    The data is in memory, so there is no socket whose timeout could be set.
    """

    def set_socket_timeout(self, timeout: float) -> None:
        return None


class _ReplayThenFail(io.RawIOBase):
    """Replays the bytes read before a read error, then raises that same error."""

    def __init__(self, data: bytes, error: BaseException) -> None:
        self._data = io.BytesIO(data)
        self._error: BaseException | None = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._data.readinto(buffer)
        if count or self._error is None:
            return count
        error, self._error = self._error, None
        raise error

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            self._data.read()
            error, self._error = self._error, None
            if error is not None:
                raise error
            return b""
        return super().read(size) or b""


def read_body(body: StreamingBody, content_length: Any) -> tuple[bytes, BaseException | None, Any]:
    """Read a response body whole, the way callers almost always do (``body.read()``).

    Returns:
        ``(data, error, replacement)``. The replacement gives the caller the same bytes and the
        same content-length check; if the read failed, it raises that very error at the
        caller's first read, as the untraced body would have on ``read()``.
    """
    try:
        data = body.read()
    except Exception as error:  # noqa: BLE001 - the caller's error, handed back unchanged
        return (
            b"",
            error,
            BufferedBody(cast("IO[bytes]", _ReplayThenFail(b"", error)), content_length),
        )
    return data, None, BufferedBody(io.BytesIO(data), content_length)


def _invoke_finish(parsed: Mapping[str, Any], headers: Mapping[str, str], call: Any) -> Finished:
    """invoke_model: the outputs are the decoded response body (DESIGN.md section 3)."""
    body = parsed.get("body")
    if not isinstance(body, StreamingBody):
        return invoke_body_finish(None, None, parsed, headers, call)
    data, error, replacement = read_body(body, headers.get("content-length"))
    # Hand the caller the buffered body: same bytes, same API (DESIGN.md 5.8).
    parsed["body"] = replacement  # type: ignore[index]
    return invoke_body_finish(data, error, parsed, headers, call)


def invoke_body_finish(
    data: bytes | None,
    error: BaseException | None,
    fields: Mapping[str, Any],
    headers: Mapping[str, str],
    call: Any,
) -> Finished:
    """Outputs and attributes from an invoke_model response body read whole (or failed)."""
    config: TraceConfig = call.config
    attributes = _content_type_attributes(fields)
    decoded: Any = None
    if error is not None:
        attributes[K.BODY_ERROR] = f"response body read failed: {type(error).__name__}: {error}"
    if data is not None:
        decoded, reason = decode_json_body(
            data, include_binary=config.include_binary, max_raw_chars=config.max_raw_body_chars
        )
        if reason and error is None:
            attributes[K.BODY_ERROR] = f"response {reason}"
    family = _models.family_of(call.params.get("modelId") if call.params else None)
    attributes.update(invoke_body_attributes(family, decoded, headers, metrics=None))
    attributes.update(_chat_attributes(family, call.inputs, decoded))
    return Finished(decoded, attributes)


def _content_type_attributes(fields: Mapping[str, Any]) -> Attributes:
    content_type = fields.get("contentType")
    return {K.CONTENT_TYPE: content_type} if isinstance(content_type, str) else {}


def invoke_body_attributes(
    family: _models.Family, body: Any, headers: Mapping[str, str], metrics: Any
) -> Attributes:
    """Usage (body, then stream invocation metrics, then headers), stop reason, latency."""
    attributes: Attributes = {}
    usage = family.usage(body) if isinstance(body, Mapping) else None
    if usage is not None:
        attributes[K.USAGE_SOURCE] = "body"
    elif usage := _models.metrics_usage(metrics):
        attributes[K.USAGE_SOURCE] = "invocation_metrics"
    elif usage := _models.header_usage(headers):
        attributes[K.USAGE_SOURCE] = "headers"
    if usage:
        attributes[K.CHAT_USAGE] = usage
    if isinstance(body, Mapping) and (stop := family.stop_reason(body)):
        attributes[K.STOP_REASON] = stop
    metrics = metrics if isinstance(metrics, Mapping) else {}
    latency = metrics.get("invocationLatency", headers.get("x-amzn-bedrock-invocation-latency"))
    if (latency_ms := _models._int(latency)) is not None:
        attributes[K.LATENCY_MS] = latency_ms
    if (first_byte := _models._int(metrics.get("firstByteLatency"))) is not None:
        attributes[K.FIRST_BYTE_LATENCY_MS] = first_byte
    return attributes


# --- streams -------------------------------------------------------------------------------


def _converse_stream_accumulator(
    params: Mapping[str, Any], config: TraceConfig, parent: Any
) -> Any:
    return ConverseAccumulator(config.include_binary)


def _converse_stream_finish(
    accumulator: Any, *, fields: Mapping[str, Any], headers: Mapping[str, str], inputs: Any
) -> tuple[Any, Attributes]:
    response = accumulator.build()
    outputs = json_safe(response, accumulator.include_binary)
    return outputs, converse_finish_attributes(response)


def _invoke_stream_accumulator(params: Mapping[str, Any], config: TraceConfig, parent: Any) -> Any:
    return ChunkAccumulator(params.get("modelId"), config.include_binary)


def _invoke_stream_finish(
    accumulator: Any, *, fields: Mapping[str, Any], headers: Mapping[str, str], inputs: Any
) -> tuple[Any, Attributes]:
    body = json_safe(accumulator.build(), accumulator.include_binary, base64_strings=True)
    attributes = _content_type_attributes(fields)
    attributes.update(
        invoke_body_attributes(accumulator.family, body, headers, accumulator.metrics)
    )
    attributes.update(_chat_attributes(accumulator.family, inputs, body))
    return body, attributes


def _chat_attributes(family: _models.Family, inputs: Any, body: Any) -> Attributes:
    """``mlflow.chat.messages`` for the MLflow UI's Chat view, for chat families."""
    request = inputs.get("body") if isinstance(inputs, Mapping) else None
    messages = chat_messages(family.name, request, body)
    return {K.CHAT_MESSAGES: messages} if messages else {}


# --- the table -----------------------------------------------------------------------------

# (params, config, serialised request body or None) -> (inputs, attributes)
InputsFn = Callable[[Mapping[str, Any], TraceConfig, Any], "tuple[Any, Attributes]"]
FinishFn = Callable[[Mapping[str, Any], Mapping[str, str], Any], Finished]
# (accumulator, *, fields, headers, inputs) -> (outputs, attributes)
StreamFinishFn = Callable[..., "tuple[Any, Attributes]"]


@attrs.frozen
class Operation:
    """How one Bedrock Runtime operation is traced."""

    name: str
    span_name: str
    #: span type from the recorded (decoded) inputs
    span_type: Callable[[Mapping[str, Any]], str]
    inputs: InputsFn = _plain_inputs
    attributes: Callable[[Mapping[str, Any]], Attributes] = _model_attributes
    finish: FinishFn = _plain_finish
    #: operations whose response has a streaming blob (invoke_model's ``body``): its key
    body_key: str | None = None
    #: streaming operations: the key of the event stream in the response,
    stream_key: str | None = None
    #: the accumulator that rebuilds the non-streaming response from its events, from
    #: (params, config, the call's span: the parent of any child spans it makes),
    accumulator: Callable[[Mapping[str, Any], TraceConfig, Any], Any] | None = None
    #: and what the rebuilt response gives: (outputs, attributes)
    stream_finish: StreamFinishFn | None = None
    #: trace metadata from the caller's parameters, set when the span is its trace's root
    trace_metadata: Callable[[Mapping[str, Any]], dict[str, str]] | None = None


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _invoke_span_type(inputs: Mapping[str, Any]) -> str:
    return _models.family_of(inputs.get("modelId")).span_type(inputs.get("body"))


def _fixed(span_type: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda params: span_type


def _op(name: str, span_type: Callable[[Mapping[str, Any]], str], **kw: Any) -> Operation:
    return Operation(
        name=name, span_name=K.SPAN_NAME_PREFIX + _snake(name), span_type=span_type, **kw
    )


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        _op(
            "Converse",
            _fixed(K.SpanType.CHAT_MODEL),
            attributes=_converse_attributes,
            finish=_converse_finish,
        ),
        _op(
            "InvokeModel",
            _invoke_span_type,
            inputs=_invoke_inputs,
            finish=_invoke_finish,
            body_key="body",
        ),
        _op(
            "ConverseStream",
            _fixed(K.SpanType.CHAT_MODEL),
            attributes=_converse_attributes,
            stream_key="stream",
            accumulator=_converse_stream_accumulator,
            stream_finish=_converse_stream_finish,
        ),
        _op(
            "InvokeModelWithResponseStream",
            _invoke_span_type,
            inputs=_invoke_inputs,
            stream_key="body",
            accumulator=_invoke_stream_accumulator,
            stream_finish=_invoke_stream_finish,
        ),
        _op("ApplyGuardrail", _fixed(K.SpanType.GUARDRAIL)),
        _op("InvokeGuardrailChecks", _fixed(K.SpanType.GUARDRAIL)),
        _op("CountTokens", _fixed(K.SpanType.UNKNOWN), inputs=_count_tokens_inputs),
        _op("StartAsyncInvoke", _fixed(K.SpanType.UNKNOWN)),
        _op("GetAsyncInvoke", _fixed(K.SpanType.UNKNOWN)),
        _op("ListAsyncInvokes", _fixed(K.SpanType.UNKNOWN)),
    )
}

# Operations whose output is a bidirectional event stream cannot be traced from the events
# botocore emits for a plain request/response call; they are left alone.
_UNSUPPORTED = frozenset({"InvokeModelWithBidirectionalStream"})


_generic: dict[str, Operation | None] = {}


def operation_for(name: str, has_event_stream_output: bool) -> Operation | None:
    """The mapper for an operation; a generic one for operations this version does not know.

    Returns None for operations that are not traced (bidirectional streams, and event-stream
    operations without a stream mapper).
    """
    op = OPERATIONS.get(name)
    if op is not None:
        return op
    if name not in _generic:
        supported = not has_event_stream_output and name not in _UNSUPPORTED
        _generic[name] = _op(name, _fixed(K.SpanType.UNKNOWN)) if supported else None
    return _generic[name]
