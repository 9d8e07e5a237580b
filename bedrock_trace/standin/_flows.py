"""Bedrock Flows: InvokeFlow, a three-node flow (input, prompt, output) and its trace.

The stream ``responseStream`` carries, with ``enableTrace``, ``flowTraceEvent`` events for each
node (``nodeInputTrace``, ``nodeActionTrace``, ``nodeOutputTrace``, stamped with ``timestamp``),
then the ``flowOutputEvent`` of the output node and a ``flowCompletionEvent``. A sample::

    {"flowOutputEvent": {"nodeName": "FlowOutputNode", "nodeType": "FlowOutputNode",
                         "content": {"document": "..."}}}
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final

from bedrock_trace._eventstream import event_message
from bedrock_trace.standin._exchange import _Exchange, _Response
from bedrock_trace.standin._request import _document_text
from bedrock_trace.standin._wire import _JsonObject, _list, _mapping, _stamp

_INPUT: Final = "FlowInputNode"
_PROMPT: Final = "Answer"
_OUTPUT: Final = "FlowOutputNode"
_STEP: Final = timedelta(microseconds=200)


def _flow_input(body: Mapping[str, Any]) -> Any:
    inputs = _list(body.get("inputs"))
    first = _mapping(inputs[0]) if inputs else {}
    return _mapping(first.get("content")).get("document", "")


def _outputs(node: str, name: str, document: Any, to_node: str, to_input: str) -> _JsonObject:
    """A ``nodeOutputTrace``: one output field and the node input it flows to."""
    field = {
        "nodeOutputName": name,
        "content": {"document": document},
        "next": [{"nodeName": to_node, "inputFieldName": to_input}],
        "type": "String",
    }
    return {"nodeName": node, "fields": [field]}


def _inputs(node: str, name: str, document: Any, from_node: str, from_output: str) -> _JsonObject:
    """A ``nodeInputTrace``: one input field and the node output it came from."""
    field = {
        "nodeInputName": name,
        "content": {"document": document},
        "source": {"nodeName": from_node, "outputFieldName": from_output, "expression": "$.data"},
        "type": "String",
    }
    return {"nodeName": node, "fields": [field]}


def _flow_events(exchange: _Exchange) -> list[tuple[str, _JsonObject]]:
    body = _mapping(exchange.body)
    question = _flow_input(body)
    reply = exchange.reply
    answer = reply.text if reply is not None and reply.text is not None else None
    answer = answer if answer is not None else f"You said: {_document_text(question)}"
    clock = exchange.received
    step = max(_STEP, timedelta(seconds=exchange.per_event))
    traces: list[_JsonObject] = []

    def node(kind: str, value: _JsonObject) -> None:
        nonlocal clock
        clock += step
        traces.append({kind: {**value, "timestamp": _stamp(clock)}})

    node("nodeOutputTrace", _outputs(_INPUT, "document", question, _PROMPT, "question"))
    node("nodeInputTrace", _inputs(_PROMPT, "question", question, _INPUT, "document"))
    node(
        "nodeActionTrace",
        {
            "nodeName": _PROMPT,
            "serviceName": "bedrock-runtime",
            "operationName": "Converse",
            "requestId": str(uuid.uuid4()),
            "operationRequest": {
                "messages": [{"role": "user", "content": [{"text": _document_text(question)}]}]
            },
            "operationResponse": {
                "output": {"message": {"role": "assistant", "content": [{"text": answer}]}}
            },
        },
    )
    node("nodeOutputTrace", _outputs(_PROMPT, "modelCompletion", answer, _OUTPUT, "document"))
    node("nodeInputTrace", _inputs(_OUTPUT, "document", answer, _PROMPT, "modelCompletion"))
    events: list[tuple[str, _JsonObject]] = []
    if body.get("enableTrace") is True:
        events.extend(("flowTraceEvent", {"trace": trace}) for trace in traces)
    events.append(
        (
            "flowOutputEvent",
            {"nodeName": _OUTPUT, "nodeType": "FlowOutputNode", "content": {"document": answer}},
        )
    )
    events.append(("flowCompletionEvent", {"completionReason": "SUCCESS"}))
    return events


def _respond(exchange: _Exchange) -> _Response:
    """The response of invoke_flow: the ``responseStream`` and the execution id header."""
    execution = str(_mapping(exchange.body).get("executionId") or uuid.uuid4())
    messages = [event_message(name, payload) for name, payload in _flow_events(exchange)]
    return _Response({"x-amz-bedrock-flow-execution-id": execution}, messages=messages)
