"""Bedrock Runtime: the responses of each operation, JSON bodies and event streams."""

from __future__ import annotations

from typing import Any

from bedrock_trace._eventstream import chunk_event, event_message
from bedrock_trace.standin._answer import _Answer
from bedrock_trace.standin._converse import _converse_body, _converse_events
from bedrock_trace.standin._exchange import _Exchange, _Response
from bedrock_trace.standin._guardrail import _guardrail_body
from bedrock_trace.standin._invoke import _dialect, _invoke_body, _invoke_chunks
from bedrock_trace.standin._request import _View
from bedrock_trace.standin._routes import _STREAMING, _Route
from bedrock_trace.standin._wire import _JSON, _json_bytes, _mapping


def _stream_messages(route: _Route, body: Any, answer: _Answer) -> list[bytes]:
    """The encoded event-stream messages of a streaming reply."""
    if route.operation == "converse_stream":
        return [
            event_message(name, payload)
            for event in _converse_events(answer)
            for name, payload in event.items()
        ]
    model_id = route.model_id or ""
    chunks = _invoke_chunks(_dialect(model_id, _mapping(body)), answer, model_id)
    return [chunk_event(chunk) for chunk in chunks]


def _json_document(route: _Route, body: Any, view: _View, answer: _Answer) -> Any:
    if answer.body is not None:
        return dict(answer.body)
    if route.operation == "converse":
        return _converse_body(answer)
    if route.operation == "apply_guardrail":
        return _guardrail_body(answer, view)
    if route.operation == "count_tokens":
        return {"inputTokens": answer.input_tokens}
    model_id = route.model_id or ""
    return _invoke_body(_dialect(model_id, _mapping(body)), answer, model_id, _mapping(body))


def _usage_headers(answer: _Answer) -> dict[str, str]:
    """Bedrock reports invoke_model usage in headers, whatever the model's body says."""
    headers = {
        "X-Amzn-Bedrock-Invocation-Latency": str(answer.latency_ms),
        "X-Amzn-Bedrock-Input-Token-Count": str(answer.input_tokens),
        "X-Amzn-Bedrock-Output-Token-Count": str(answer.output_tokens),
    }
    if answer.cache_read_tokens is not None:
        headers["X-Amzn-Bedrock-Cache-Read-Input-Token-Count"] = str(answer.cache_read_tokens)
    if answer.cache_write_tokens is not None:
        headers["X-Amzn-Bedrock-Cache-Write-Input-Token-Count"] = str(answer.cache_write_tokens)
    return headers


def _respond(exchange: _Exchange) -> _Response:
    """The response of a Bedrock Runtime operation."""
    route, answer = exchange.route, exchange.answer
    if route.operation in _STREAMING:
        # Only invoke_model's stream says what its chunks hold.
        headers = (
            {} if route.operation == "converse_stream" else {"X-Amzn-Bedrock-Content-Type": _JSON}
        )
        return _Response(headers, messages=_stream_messages(route, exchange.body, answer))
    document = _json_document(route, exchange.body, exchange.view, answer)
    headers = {"Content-Type": _JSON}
    if route.operation == "invoke_model":
        headers.update(_usage_headers(answer))
    return _Response(headers, document=_json_bytes(document))
