"""The span assertions every framework scenario must pass, wherever its traces were read from
(in memory, or back from an MLflow store)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mlflow.entities import SpanStatusCode
from mlflow.tracing.constant import SpanAttributeKey

from bedrock_trace.standin import RecordedRequest

from .scenarios import TOOL_USE_ID, WEATHER, Scenario

INCOMPLETE = "bedrock_trace.incomplete"


def bedrock_spans(traces: Sequence[Any]) -> list[Any]:
    """Every Bedrock span of ``traces``, in start order."""
    spans = [s for t in traces for s in t.data.spans if s.name.startswith("BedrockRuntime.")]
    return sorted(spans, key=lambda s: s.start_time_ns)


def root_of(traces: Sequence[Any], name: str) -> tuple[Any, Any]:
    """The trace whose root span is ``name``, and that span."""
    found = [(t, s) for t in traces for s in t.data.spans if s.parent_id is None and s.name == name]
    assert len(found) == 1, f"expected one trace rooted at {name!r}, got {len(found)}"
    return found[0]


def check_spans(
    scenario: Scenario, traces: Sequence[Any], app: str, requests: Sequence[RecordedRequest]
) -> None:
    """The Bedrock spans of one run of ``scenario`` under the caller's span named ``app``.

    ``requests``: what the stand-in received during that run.
    """
    app_trace, app_span = root_of(traces, app)
    spans = bedrock_spans(traces)
    assert [(s.name, s.span_type) for s in spans] == list(scenario.spans)
    # One span per HTTP call the framework made, each for the model it asked for.
    assert len(requests) == len(spans)
    for span, request in zip(spans, requests, strict=True):
        assert span.attributes.get(SpanAttributeKey.MODEL) == request.model_id

    own_ids = {s.span_id for s in app_trace.data.spans}
    for span in spans:
        if scenario.nested:
            assert span.parent_id == app_span.span_id, f"{span.name} is not under {app!r}"
        else:  # the documented limit: work run in an executor starts a trace of its own
            assert span.span_id not in own_ids
            assert span.parent_id is None
        assert span.status.status_code == SpanStatusCode.OK, span.status
        assert span.attributes.get(INCOMPLETE) is None, f"{span.name} recorded as incomplete"
        usage = span.attributes.get(SpanAttributeKey.CHAT_USAGE)
        assert usage is not None, f"{span.name} has no token usage"
        assert usage["input_tokens"] > 0
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        if span.span_type == "CHAT_MODEL":
            assert usage["output_tokens"] > 0
            assert span.outputs, f"{span.name} has no outputs"
    if scenario.tools:
        check_tool_round_trip(spans)


def check_tool_round_trip(spans: Sequence[Any]) -> None:
    """The model asked for get_weather; the next call carried the tool's result back."""
    asked, answered = spans
    for span in spans:
        if span.name.startswith("BedrockRuntime.converse"):
            tools = span.attributes.get(SpanAttributeKey.CHAT_TOOLS)
            assert [t["function"]["name"] for t in tools or ()] == ["get_weather"], tools
        else:  # invoke_model: the tool definitions are part of the recorded body
            assert [t["name"] for t in span.inputs["body"]["tools"]] == ["get_weather"]
    request = json.dumps(asked.outputs)
    assert TOOL_USE_ID in request
    assert "get_weather" in request
    follow_up = json.dumps(answered.inputs)
    assert TOOL_USE_ID in follow_up
    assert WEATHER in follow_up
    assert WEATHER in json.dumps(answered.outputs)
