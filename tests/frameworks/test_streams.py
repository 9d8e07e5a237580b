"""Streams as the frameworks handle them: pydantic-ai cancelling a read in flight."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import mlflow
import pytest
from mlflow.entities import SpanStatusCode

import bedrock_trace
from bedrock_trace.standin import StandIn
from bedrock_trace.testing import capture_traces, flush

from .checks import INCOMPLETE, bedrock_spans
from .conftest import require
from .scenarios import BY_ID, MODEL

END_REASON = "bedrock_trace.end_reason"
# Each event of the answer arrives a second after the one before: a read is in flight when the
# caller cancels.
SLOW = {"operation": "converse_stream", "contains": "slowly", "slow": {"per_chunk": 1.0}}


def _cancel_after_first_delta() -> dict[str, Any]:
    from pydantic_ai import Agent

    async def run() -> dict[str, Any]:
        agent = Agent(f"bedrock:{MODEL}")
        async with agent.run_stream("Answer slowly, in many words please") as result:
            async for delta in result.stream_text(delta=True):
                first = delta
                break
            await result.cancel()
            return {"first": first, "cancelled": result.cancelled}

    return asyncio.run(run())


def test_pydantic_ai_cancel_shuts_the_traced_stream_down(standin: StandIn) -> None:
    """pydantic-ai cancels a blocked read by shutting down the socket it finds in
    ``vars(stream)["_raw_stream"]``, then closes the stream: under tracing it finds the socket
    too, and the span records a read the caller cancelled, not an error."""
    require(BY_ID["pydantic_ai-stream"])
    standin.add(SLOW)
    untraced = _cancel_after_first_delta()
    standin.reset()
    standin.add(SLOW)

    bedrock_trace.autolog()
    try:
        with capture_traces() as capture:
            traced = mlflow.trace(name="app")(_cancel_after_first_delta)()
            gc.collect()
            flush()
            assert capture.open_traces() == 0, "a span was left open"
    finally:
        bedrock_trace.autolog(disable=True)

    assert traced == untraced
    assert traced["cancelled"] is True
    (span,) = bedrock_spans(capture.traces)
    assert span.name == "BedrockRuntime.converse_stream"
    assert span.status.status_code == SpanStatusCode.OK, span.status
    assert span.attributes.get(INCOMPLETE) is True
    # The socket was shut down under the blocked read (found through _raw_stream), and only
    # then was the stream closed.
    assert span.attributes.get(END_REASON, "").startswith("the caller cancelled the read")


@pytest.mark.parametrize("scenario_id", ["langchain-invoke-stream", "langchain-stream"])
def test_langchain_stream_closed_after_its_final_event_is_complete(
    scenario_id: str, standin: StandIn
) -> None:
    """langchain-aws stops reading at the final event (Anthropic's ``message_stop``; converse's
    ``metadata``) and closes the stream: every event arrived, so the span is complete."""
    scenario = BY_ID[scenario_id]
    require(scenario)
    bedrock_trace.autolog()
    try:
        with capture_traces() as capture:
            mlflow.trace(name="app")(scenario.run)()
            gc.collect()
            flush()
    finally:
        bedrock_trace.autolog(disable=True)
    (span,) = bedrock_spans(capture.traces)
    assert span.attributes.get(INCOMPLETE) is None
    assert span.attributes.get(END_REASON) is None
    assert span.status.status_code == SpanStatusCode.OK
