"""Property tests for the stream wrappers over generated event sequences and consumers."""

from __future__ import annotations

import functools
import gc
import json
import os

from hypothesis import HealthCheck, given, settings

import bedrock_trace
from bedrock_trace.testing import HttpStub, capture_traces, flush

from .conftest import ONE_ATTEMPT, make_session
from .strategies import (
    agent_messages,
    consumers,
    converse_messages,
    invoke_chunks,
    invoke_model_ids,
)

MESSAGES = [{"role": "user", "content": [{"text": "Hi"}]}]
SETTINGS = settings(
    max_examples=int(os.environ.get("BEDROCK_TRACE_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@functools.cache
def clients(service: str = "bedrock-runtime"):
    """One untraced and one traced client of ``service``, shared by all examples."""
    session = make_session()
    untraced = session.client(service, config=ONE_ATTEMPT)
    bedrock_trace.register(session)
    return untraced, session.client(service, config=ONE_ATTEMPT)


def consume(stream, how, stop_at):
    """Consume like a caller would; returns the events received and the error type, if any."""
    received, error = [], None
    iterator = None
    try:
        if how == "exhaust":
            received.extend(stream)
        elif how == "drop" and stop_at == 0:
            pass
        else:
            iterator = iter(stream)
            for index, event in enumerate(iterator):
                received.append(event)
                if index >= stop_at:
                    break
            if how == "close":
                stream.close()
    except Exception as exc:
        error = type(exc).__name__
    return received, error, iterator


def run(messages, call, how, stop_at, service="bedrock-runtime", key=None):
    outcomes = []
    untraced, traced = clients(service)
    with capture_traces() as capture:
        for client in (untraced, traced):
            with HttpStub(client) as http:
                http.add_stream(messages)
                response = call(client)
                key = key or ("stream" if "stream" in response else "body")
                received, error, held = consume(response[key], how, stop_at)
                outcomes.append((received, error))
                del response, held
        gc.collect()
        flush()
        spans = capture.spans
        open_traces = capture.open_traces()
    return outcomes, spans, open_traces


class TestStreamWrapperProperties:
    """For any event sequence and any way of consuming it."""

    @SETTINGS
    @given(messages=converse_messages(), consumer=consumers)
    def test_converse_stream(self, messages, consumer):
        """Events pass unchanged, errors are the untraced ones, the span ends exactly once."""
        outcomes, spans, open_traces = run(
            messages, lambda c: c.converse_stream(modelId="m.x-v1", messages=MESSAGES), *consumer
        )
        assert outcomes[0] == outcomes[1]
        assert len(spans) == 1
        assert open_traces == 0
        json.dumps(spans[0].outputs)

    @SETTINGS
    @given(messages=invoke_chunks(), consumer=consumers, model_id=invoke_model_ids)
    def test_invoke_model_stream(self, messages, consumer, model_id):
        """Any chunk bytes, any model family: same guarantees."""
        outcomes, spans, open_traces = run(
            messages,
            lambda c: c.invoke_model_with_response_stream(modelId=model_id, body=b"{}"),
            *consumer,
        )
        assert outcomes[0] == outcomes[1]
        assert len(spans) == 1
        assert open_traces == 0

    @SETTINGS
    @given(messages=agent_messages(), consumer=consumers)
    def test_agent_stream(self, messages, consumer):
        """Any agent trace, in any order, read any way: events unchanged, every span ended,
        every child inside its parent."""
        outcomes, spans, open_traces = run(
            messages,
            lambda c: c.invoke_agent(
                agentId="AGENT12345",
                agentAliasId="ALIAS12345",
                sessionId="s-1",
                inputText="hi",
                enableTrace=True,
            ),
            *consumer,
            service="bedrock-agent-runtime",
            key="completion",
        )
        assert outcomes[0] == outcomes[1]
        assert open_traces == 0
        by_id = {span.span_id: span for span in spans}
        (root,) = [span for span in spans if span.parent_id is None]
        assert root.name == "BedrockAgentRuntime.invoke_agent"
        for span in spans:
            parent = by_id.get(span.parent_id)
            if parent is not None:
                assert parent.start_time_ns <= span.start_time_ns <= span.end_time_ns
                assert span.end_time_ns <= parent.end_time_ns
        json.dumps([span.outputs for span in spans])
