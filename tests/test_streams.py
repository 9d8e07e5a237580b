"""Streams: events pass through untouched, outputs are rebuilt, the span ends exactly once."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import urllib3
from botocore.config import Config
from botocore.eventstream import EventStream, NoInitialResponseError
from botocore.exceptions import EventStreamError, ReadTimeoutError
from mlflow.entities import SpanStatusCode, SpanType

import bedrock_trace
from bedrock_trace.testing import (
    HttpStub,
    chunk_event,
    converse_response,
    converse_stream_messages,
    event_message,
    exception_message,
    flush,
)

from .conftest import ONE_ATTEMPT, make_session, session_with_model_change
from .loopback import Script, loopback

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "Tell me a story"}]}]
CLAUDE_BODY = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "Tell me a story"}],
}


def anthropic_chunks(text: str = "Once upon a time", pieces: int = 4) -> list[bytes]:
    """Anthropic messages streaming events as InvokeModelWithResponseStream chunks."""
    size = max(1, -(-len(text) // pieces))
    chunks = [
        chunk_event(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude",
                    "content": [],
                    "usage": {"input_tokens": 11, "output_tokens": 1},
                },
            }
        ),
        chunk_event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
        ),
    ]
    chunks += [
        chunk_event(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text[i : i + size]},
            }
        )
        for i in range(0, len(text), size)
    ]
    chunks += [
        chunk_event({"type": "content_block_stop", "index": 0}),
        chunk_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 6},
            }
        ),
        chunk_event(
            {
                "type": "message_stop",
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": 11,
                    "outputTokenCount": 6,
                    "invocationLatency": 250,
                    "firstByteLatency": 40,
                },
            }
        ),
    ]
    return chunks


@attrs.frozen
class Kind:
    """One streaming operation: how to build its messages and make the call."""

    name: str
    key: str
    messages: Callable[[int], list[bytes]]
    call: Callable[[Any], dict[str, Any]]
    full_text: str


CONVERSE_KIND = Kind(
    "BedrockRuntime.converse_stream",
    "stream",
    lambda pieces: converse_stream_messages("Once upon a time", pieces=pieces),
    lambda client: client.converse_stream(modelId=CLAUDE, messages=MESSAGES),
    "Once upon a time",
)
INVOKE_KIND = Kind(
    "BedrockRuntime.invoke_model_with_response_stream",
    "body",
    lambda pieces: anthropic_chunks(pieces=pieces),
    lambda client: client.invoke_model_with_response_stream(
        modelId=CLAUDE, body=json.dumps(CLAUDE_BODY)
    ),
    "Once upon a time",
)


@pytest.fixture(params=[CONVERSE_KIND, INVOKE_KIND], ids=["converse_stream", "invoke_stream"])
def kind(request) -> Kind:
    return request.param


def text_of(kind: Kind, span) -> str:
    if kind is CONVERSE_KIND:
        content = span.outputs["output"]["message"]["content"]
        return "".join(block.get("text", "") for block in content)
    return "".join(block.get("text", "") for block in span.outputs["content"])


def settle() -> None:
    gc.collect()
    flush()


class TestStreamEnds:
    """Every way a stream can end ends its span exactly once."""

    def test_exhausted(self, capture, client, http, kind):
        """Read to the end: OK, the full rebuilt output, one span event per stream event."""
        messages = kind.messages(4)
        http.add_stream(messages)
        stream = kind.call(client)[kind.key]
        events = list(stream)
        (span,) = capture.spans
        assert span.name == kind.name
        assert span.status.status_code == SpanStatusCode.OK
        assert "bedrock_trace.incomplete" not in span.attributes
        assert text_of(kind, span) == kind.full_text
        assert len(span.events) == len(events) == len(messages)
        assert span.attributes["bedrock_trace.stream_events"] == len(messages)
        assert span.attributes["mlflow.chat.tokenUsage"]["output_tokens"] > 0
        assert span.attributes["bedrock_trace.time_to_first_token_ms"] > 0

    def test_break_then_iterator_collected(self, capture, client, http, kind):
        """break: the loop's iterator is collected; the span ends incomplete, partial output."""
        http.add_stream(kind.messages(4))
        response = kind.call(client)
        for index, _event in enumerate(response[kind.key]):
            if index == 2:
                break
        settle()
        (span,) = capture.spans
        assert span.attributes["bedrock_trace.incomplete"] is True
        assert span.status.status_code == SpanStatusCode.OK
        assert len(span.events) == 3
        del response

    def test_break_then_close(self, capture, client, http, kind):
        """break, then close(): one span, incomplete."""
        http.add_stream(kind.messages(4))
        stream = kind.call(client)[kind.key]
        for _event in stream:
            break
        stream.close()
        stream.close()
        settle()
        (span,) = capture.spans
        assert span.attributes["bedrock_trace.incomplete"] is True

    def test_iterator_kept_then_everything_dropped(self, capture, client, http, kind):
        """A half-read iterator kept alive keeps the span open until the wrapper is dropped."""
        http.add_stream(kind.messages(4))
        stream = kind.call(client)[kind.key]
        iterator = iter(stream)
        next(iterator)
        settle()
        assert capture.spans == []
        assert capture.open_traces() == 1
        del iterator, stream
        settle()
        (span,) = capture.spans
        assert span.attributes["bedrock_trace.incomplete"] is True
        assert capture.open_traces() == 0

    def test_close_before_iteration(self, capture, client, http, kind):
        """close() before reading: incomplete, no events."""
        http.add_stream(kind.messages(4))
        stream = kind.call(client)[kind.key]
        stream.close()
        (span,) = capture.spans
        assert span.attributes["bedrock_trace.incomplete"] is True
        assert "closed" in span.attributes["bedrock_trace.end_reason"]
        assert span.events == []

    def test_close_during_iteration(self, capture, client, http, kind):
        """close() from inside the loop: the span ends once, with what was read."""
        http.add_stream(kind.messages(4))
        stream = kind.call(client)[kind.key]
        for seen, _event in enumerate(stream, start=1):
            if seen == 2:
                stream.close()
                break
        settle()
        (span,) = capture.spans
        assert span.attributes["bedrock_trace.incomplete"] is True
        assert len(span.events) == 2

    def test_context_manager_closes(self, capture, client, http, kind):
        """with stream: leaving the block closes it and ends the span."""
        http.add_stream(kind.messages(4))
        with kind.call(client)[kind.key] as stream:
            next(iter(stream))
        settle()
        (span,) = capture.spans
        assert span.attributes["bedrock_trace.incomplete"] is True

    def test_dropped_unread(self, capture, client, http, kind):
        """A response dropped without reading its stream: the span still ends."""
        http.add_stream(kind.messages(4))
        kind.call(client)
        settle()
        (span,) = capture.spans
        assert span.attributes["bedrock_trace.incomplete"] is True
        assert "dropped" in span.attributes["bedrock_trace.end_reason"]
        assert capture.open_traces() == 0

    @pytest.mark.parametrize(
        "code", ["throttlingException", "modelStreamErrorException", "internalServerException"]
    )
    def test_exception_event_mid_stream(self, capture, client, http, kind, code):
        """An exception event: the caller gets EventStreamError; the span is ERROR with it."""
        messages = [*kind.messages(4)[:3], exception_message(code, "stream failed midway")]
        http.add_stream(messages)
        stream = kind.call(client)[kind.key]
        received = []

        def read_all():
            for event in stream:
                received.append(event)

        with pytest.raises(EventStreamError) as raised:
            read_all()
        assert raised.value.response["Error"]["Code"] == code
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.ERROR
        assert span.attributes["bedrock_trace.error_code"] == code
        assert span.attributes["bedrock_trace.incomplete"] is True
        (exception,) = [e for e in span.events if e.name == "exception"]
        assert exception.attributes["exception.type"] == "EventStreamError"
        assert len(span.events) == len(received) + 1

    def test_read_timeout_mid_stream(self, capture, session, kind):
        """The server stalls mid-stream: the caller gets the untraced error, ERROR span."""
        messages = kind.messages(4)
        outcomes = []
        for target in (make_session(), session):  # untraced, then traced
            with loopback() as server:
                server.add(
                    Script(
                        [(0, b"".join(messages[:2])), (3, b"".join(messages[2:]))],
                        headers={"content-type": "application/vnd.amazon.eventstream"},
                    )
                )
                client = target.client(
                    "bedrock-runtime",
                    endpoint_url=server.url,
                    config=Config(read_timeout=0.5, retries={"total_max_attempts": 1}),
                )
                received: list[Any] = []
                stream = kind.call(client)[kind.key]
                with pytest.raises(
                    (ReadTimeoutError, urllib3.exceptions.ReadTimeoutError)
                ) as raised:
                    received.extend(stream)  # extend keeps what came before the error
                outcomes.append((received, type(raised.value)))
        assert outcomes[0] == outcomes[1]
        settle()  # a read that fails without the service saying so waits for a close()
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.ERROR
        assert span.attributes["bedrock_trace.incomplete"] is True

    def test_connection_dropped_mid_stream(self, capture, session, kind):
        """The server drops the connection mid-message: the caller sees what it would untraced."""
        messages = kind.messages(4)
        body = b"".join(messages)
        cut = len(b"".join(messages[:3])) + 5  # inside the fourth message
        outcomes = []
        for traced in (False, True):
            with loopback() as server:
                server.add(
                    Script(
                        [(0, body[:cut])],
                        content_length=len(body),
                        headers={"content-type": "application/vnd.amazon.eventstream"},
                    )
                )
                target = session if traced else make_session()
                client = target.client(
                    "bedrock-runtime", endpoint_url=server.url, config=ONE_ATTEMPT
                )
                received, error = [], None
                try:
                    for event in kind.call(client)[kind.key]:
                        received.append(event)
                except Exception as exc:
                    error = type(exc)
                outcomes.append((received, error))
        assert outcomes[0] == outcomes[1]
        settle()
        (span,) = capture.spans
        assert len(span.events) == len(outcomes[1][0]) + (outcomes[1][1] is not None)
        expected = SpanStatusCode.ERROR if outcomes[1][1] else SpanStatusCode.OK
        assert span.status.status_code == expected
        assert capture.open_traces() == 0

    def test_unregister_while_open(self, capture, session, kind):
        """unregister with a stream handed out: that stream still ends its span."""
        client = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        with HttpStub(client) as http:
            http.add_stream(kind.messages(4))
            stream = kind.call(client)[kind.key]
            bedrock_trace.unregister(session)
            assert len(list(stream)) == len(kind.messages(4))
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK

    def test_empty_stream(self, capture, client, http, kind):
        """A stream with no events at all: OK, an empty rebuilt output."""
        http.add_stream([])
        assert list(kind.call(client)[kind.key]) == []
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK
        assert span.attributes["bedrock_trace.stream_events"] == 0
        assert "bedrock_trace.time_to_first_token_ms" not in span.attributes


class TestStreamsAsFrameworksRead:
    """What agent frameworks do with a stream, recorded as what it is."""

    def test_final_event_then_close_is_complete(self, capture, client, http, kind):
        """Read up to the last event, then close (langchain-aws): complete, not broken off."""
        messages = kind.messages(4)
        http.add_stream(messages)
        stream = kind.call(client)[kind.key]
        iterator = iter(stream)
        events = [next(iterator) for _ in messages]
        stream.close()
        settle()
        (span,) = capture.spans
        assert "bedrock_trace.incomplete" not in span.attributes
        assert "bedrock_trace.end_reason" not in span.attributes
        assert span.status.status_code == SpanStatusCode.OK
        assert text_of(kind, span) == kind.full_text
        assert len(span.events) == len(events)

    def test_stop_at_final_event_then_break(self, capture, client, http, kind):
        """A loop that breaks on the final event and lets the iterator go: complete too."""
        messages = kind.messages(4)
        http.add_stream(messages)
        stream = kind.call(client)[kind.key]
        for seen, _event in enumerate(stream, start=1):
            if seen == len(messages):
                break
        settle()
        (span,) = capture.spans
        assert "bedrock_trace.incomplete" not in span.attributes

    def test_close_before_final_event_is_incomplete(self, capture, client, http, kind):
        """One event short of the end: incomplete, as before."""
        messages = kind.messages(4)
        http.add_stream(messages)
        stream = kind.call(client)[kind.key]
        iterator = iter(stream)
        for _ in messages[:-1]:
            next(iterator)
        stream.close()
        settle()
        (span,) = capture.spans
        assert span.attributes["bedrock_trace.incomplete"] is True
        assert "closed" in span.attributes["bedrock_trace.end_reason"]

    def test_vars_shows_botocores_attributes(self, capture, client, http, kind):
        """vars(stream) has what botocore's EventStream has, the very same objects."""
        http.add_stream(kind.messages(2))
        stream = kind.call(client)[kind.key]
        plain = EventStream(b"raw", None, None, "op")  # the attributes any EventStream has
        assert set(vars(plain)) <= set(vars(stream))
        raw = vars(stream)["_raw_stream"]
        assert hasattr(raw, "read")
        list(stream)

    @pytest.mark.parametrize(
        ("traced", "close_late"),
        [(False, False), (True, False), (True, True)],
        ids=["untraced", "close-at-once", "close-after-the-read-failed"],
    )
    def test_read_cancelled_from_another_thread(self, capture, traced, close_late):
        """pydantic-ai cancels a blocked read: socket shut down through vars(), then close().

        The reader gets what it gets untraced; the span is OK and incomplete ("cancelled"),
        not a failure.
        """
        import socket
        import threading

        from bedrock_trace.standin import StandIn

        scenario = {"rules": [{"reply": {"text": "one two three four"}, "slow": {"per_chunk": 2}}]}
        with StandIn(scenario=scenario) as server:
            session = make_session()
            if traced:
                bedrock_trace.register(session)
            client = session.client(
                "bedrock-runtime", endpoint_url=server.endpoint_url, config=ONE_ATTEMPT
            )
            stream = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]
            first = threading.Event()
            outcome: list[Any] = []

            def reader() -> None:
                try:
                    for _event in stream:
                        first.set()
                except Exception as error:
                    outcome.append(type(error))

            thread = threading.Thread(target=reader)
            thread.start()
            assert first.wait(10)
            vars(stream)["_raw_stream"].connection.sock.shutdown(socket.SHUT_RDWR)
            if close_late:  # the reader has failed before the close comes (the usual order)
                thread.join(10)
            stream.close()
            thread.join(10)
        assert outcome == [urllib3.exceptions.ProtocolError]
        settle()
        if not traced:
            assert capture.spans == []
            return
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK
        assert span.attributes["bedrock_trace.incomplete"] is True
        reason = span.attributes["bedrock_trace.end_reason"]
        assert ("cancelled" if close_late else "closed") in reason
        assert not [event for event in span.events if event.name == "exception"]
        bedrock_trace.unregister(session)


class TestStreamPassThrough:
    """The caller's view of a stream is the untraced one."""

    def test_events_identical_to_untraced(self, capture, kind):
        """The traced and the untraced client yield equal event lists, as EventStreams."""
        session = make_session()
        untraced = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        bedrock_trace.register(session)
        traced = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        results = []
        for client in (untraced, traced):
            with HttpStub(client) as http:
                http.add_stream(kind.messages(5))
                stream = kind.call(client)[kind.key]
                assert isinstance(stream, EventStream)
                results.append(list(stream))
        assert results[0] == results[1]
        assert len(capture.spans) == 1

    def test_get_initial_response_behaves_as_untraced(self, capture, client, http, kind):
        """get_initial_response is delegated: without an initial-response event it raises."""
        http.add_stream(kind.messages(2))
        stream = kind.call(client)[kind.key]
        with pytest.raises(NoInitialResponseError):
            stream.get_initial_response()
        stream.close()

    def test_event_cap_counts_what_it_drops(self, capture, client, http, kind):
        """max_stream_events caps the span events; the rest still reach caller and output."""
        bedrock_trace.register(client, config=bedrock_trace.TraceConfig(max_stream_events=3))
        messages = kind.messages(6)
        http.add_stream(messages)
        assert len(list(kind.call(client)[kind.key])) == len(messages)
        (span,) = capture.spans
        assert len(span.events) == 3
        assert span.attributes["bedrock_trace.dropped_events"] == len(messages) - 3
        assert text_of(kind, span) == kind.full_text

    def test_opentelemetry_event_limit_is_respected_and_counted(self, capture, client, http):
        """OpenTelemetry keeps 128 events per span: the first 127 are recorded, the rest counted."""
        text = "".join(f"w{i} " for i in range(300))
        messages = converse_stream_messages(text, pieces=300)
        http.add_stream(messages)
        events = list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
        assert len(events) == len(messages)
        (span,) = capture.spans
        assert len(span.events) == 127
        assert span.events[0].name == "messageStart"
        assert span.attributes["bedrock_trace.dropped_events"] == len(messages) - 127
        assert span.outputs["output"]["message"]["content"][0]["text"] == text
        assert span.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 15


class TestConverseStreamContent:
    """converse_stream outputs rebuild the Converse response shape."""

    def test_rebuilt_output_equals_converse_response(self, capture, client, http):
        """The same content streamed and not streamed gives equal span outputs."""
        tools = [
            {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}},
            {"toolUseId": "t2", "name": "get_time", "input": {"tz": "CET", "n": [1, 2]}},
        ]
        plain = converse_response(
            "Checking both.", tool_uses=tools, input_tokens=30, output_tokens=12, latency_ms=77
        )
        http.add(plain)
        client.converse(modelId=CLAUDE, messages=MESSAGES)
        http.add_stream(
            converse_stream_messages(
                "Checking both.", tool_uses=tools, input_tokens=30, output_tokens=12, latency_ms=77
            )
        )
        list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
        converse_span, stream_span = capture.spans
        assert stream_span.outputs == converse_span.outputs
        assert stream_span.span_type == SpanType.CHAT_MODEL
        for key in (
            "mlflow.chat.tokenUsage",
            "bedrock_trace.stop_reason",
            "bedrock_trace.latency_ms",
            "mlflow.message.format",
            "mlflow.llm.provider",
        ):
            assert stream_span.attributes[key] == converse_span.attributes[key]

    def test_reasoning_blocks(self, capture, client, http):
        """Reasoning text, signature and redacted content are rebuilt by block index."""
        http.add_stream(
            [
                event_message("messageStart", {"role": "assistant"}),
                event_message(
                    "contentBlockDelta",
                    {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Let me "}}},
                ),
                event_message(
                    "contentBlockDelta",
                    {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "think."}}},
                ),
                event_message(
                    "contentBlockDelta",
                    {
                        "contentBlockIndex": 0,
                        "delta": {"reasoningContent": {"signature": "sig-123"}},
                    },
                ),
                event_message("contentBlockStop", {"contentBlockIndex": 0}),
                event_message(
                    "contentBlockDelta",
                    {
                        "contentBlockIndex": 1,
                        "delta": {"reasoningContent": {"redactedContent": "AAEC"}},
                    },
                ),
                event_message(
                    "contentBlockDelta", {"contentBlockIndex": 2, "delta": {"text": "42"}}
                ),
                event_message("messageStop", {"stopReason": "end_turn"}),
            ]
        )
        events = list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
        assert (
            events[5]["contentBlockDelta"]["delta"]["reasoningContent"]["redactedContent"]
            == b"\x00\x01\x02"
        )
        (span,) = capture.spans
        assert span.outputs["output"]["message"]["content"] == [
            {
                "reasoningContent": {
                    "reasoningText": {"text": "Let me think.", "signature": "sig-123"}
                }
            },
            {
                "reasoningContent": {
                    "redactedContent": span.outputs["output"]["message"]["content"][1][
                        "reasoningContent"
                    ]["redactedContent"]
                }
            },
            {"text": "42"},
        ]
        redacted = span.outputs["output"]["message"]["content"][1]["reasoningContent"]
        assert redacted["redactedContent"].startswith("[binary application/octet-stream, 3 bytes")

    def test_tool_input_that_is_not_json_is_kept_raw(self, capture, client, http):
        """A tool input whose deltas do not form JSON is recorded as the raw text."""
        http.add_stream(
            [
                event_message(
                    "contentBlockStart",
                    {
                        "contentBlockIndex": 0,
                        "start": {"toolUse": {"toolUseId": "t1", "name": "f"}},
                    },
                ),
                event_message(
                    "contentBlockDelta",
                    {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"city": "Par'}}},
                ),
                event_message("messageStop", {"stopReason": "tool_use"}),
            ]
        )
        list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
        (span,) = capture.spans
        tool_use = span.outputs["output"]["message"]["content"][0]["toolUse"]
        assert tool_use == {"toolUseId": "t1", "name": "f", "input": '{"city": "Par'}


INVOKE_STREAM_ROWS = [
    pytest.param(
        "meta.llama3-8b-instruct-v1:0",
        [
            {
                "generation": "Hel",
                "prompt_token_count": 7,
                "generation_token_count": 1,
                "stop_reason": None,
            },
            {
                "generation": "lo",
                "prompt_token_count": None,
                "generation_token_count": 2,
                "stop_reason": "stop",
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": 7,
                    "outputTokenCount": 2,
                    "invocationLatency": 90,
                    "firstByteLatency": 30,
                },
            },
        ],
        {
            "generation": "Hello",
            "prompt_token_count": 7,
            "generation_token_count": 2,
            "stop_reason": "stop",
        },
        SpanType.LLM,
        {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9},
        "body",
        id="llama",  # model-parameters-meta.html
    ),
    pytest.param(
        "amazon.titan-text-express-v1",
        [
            {
                "outputText": "Hi ",
                "index": 0,
                "totalOutputTextTokenCount": 1,
                "completionReason": None,
                "inputTextTokenCount": 4,
            },
            {
                "outputText": "there",
                "index": 0,
                "totalOutputTextTokenCount": 2,
                "completionReason": "FINISH",
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": 4,
                    "outputTokenCount": 2,
                    "invocationLatency": 70,
                    "firstByteLatency": 25,
                },
            },
        ],
        {
            "results": [{"outputText": "Hi there", "tokenCount": 2, "completionReason": "FINISH"}],
            "inputTextTokenCount": 4,
        },
        SpanType.LLM,
        {"input_tokens": 4, "output_tokens": 2, "total_tokens": 6},
        "body",
        id="titan-text",  # model-parameters-titan-text.html
    ),
    pytest.param(
        "us.amazon.nova-lite-v1:0",
        [
            {"messageStart": {"role": "assistant"}},
            {"contentBlockDelta": {"delta": {"text": "Hel"}, "contentBlockIndex": 0}},
            {"contentBlockDelta": {"delta": {"text": "lo"}, "contentBlockIndex": 0}},
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": "end_turn"}},
            {
                "metadata": {"usage": {"inputTokens": 3, "outputTokens": 2}},
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": 3,
                    "outputTokenCount": 2,
                    "invocationLatency": 50,
                    "firstByteLatency": 10,
                },
            },
        ],
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 3, "outputTokens": 2},
        },
        SpanType.CHAT_MODEL,
        {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
        "body",
        id="nova",  # model-parameters-nova.html
    ),
    pytest.param(
        "mistral.mistral-large-2407-v1:0",
        [
            {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": ""},
                        "delta": {"role": "assistant", "content": "Bon"},
                        "stop_reason": None,
                    }
                ]
            },
            {
                "choices": [{"index": 0, "delta": {"content": "jour"}, "stop_reason": "stop"}],
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": 8,
                    "outputTokenCount": 2,
                    "invocationLatency": 60,
                    "firstByteLatency": 20,
                },
            },
        ],
        {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Bonjour"},
                    "stop_reason": "stop",
                }
            ]
        },
        SpanType.CHAT_MODEL,
        {"input_tokens": 8, "output_tokens": 2, "total_tokens": 10},
        "invocation_metrics",
        id="mistral-chat-metrics",  # model-parameters-mistral-chat-completion.html
    ),
]


class TestInvokeModelStreamFamilies:
    """invoke_model_with_response_stream output rebuilt per family; usage in order."""

    @pytest.mark.parametrize(
        ("model_id", "chunks", "rebuilt", "span_type", "usage", "source"), INVOKE_STREAM_ROWS
    )
    def test_family_row(
        self, capture, client, http, model_id, chunks, rebuilt, span_type, usage, source
    ):
        """Each family's chunks rebuild its non-streaming body, with usage and its source."""
        request = (
            {"messages": [{"role": "user", "content": "Hi"}]}
            if (span_type == SpanType.CHAT_MODEL)
            else {"prompt": "Hi"}
        )
        http.add_stream([chunk_event(chunk) for chunk in chunks])
        events = list(
            client.invoke_model_with_response_stream(modelId=model_id, body=json.dumps(request))[
                "body"
            ]
        )
        assert [json.loads(event["chunk"]["bytes"]) for event in events] == chunks
        (span,) = capture.spans
        assert span.span_type == span_type
        assert span.outputs == rebuilt
        assert span.attributes["mlflow.chat.tokenUsage"] == usage
        assert span.attributes["bedrock_trace.usage_source"] == source
        assert span.attributes["bedrock_trace.latency_ms"] > 0

    def test_anthropic_tool_use_and_thinking(self, capture, client, http):
        """Anthropic thinking (with signature) and tool_use input JSON are rebuilt by index."""
        chunks = [
            {
                "type": "message_start",
                "message": {
                    "id": "m",
                    "role": "assistant",
                    "content": [],
                    "usage": {"input_tokens": 20, "output_tokens": 1},
                },
            },
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Need weather."},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "EqQB"},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {},
                },
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
            },
            {"type": "content_block_stop", "index": 1},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 30},
            },
            {"type": "message_stop"},
        ]
        http.add_stream([chunk_event(chunk) for chunk in chunks])
        list(
            client.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(CLAUDE_BODY))[
                "body"
            ]
        )
        (span,) = capture.spans
        body = span.outputs
        assert body["content"] == [
            {"type": "thinking", "thinking": "Need weather.", "signature": "EqQB"},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ]
        assert body["stop_reason"] == "tool_use"
        assert span.attributes["mlflow.chat.tokenUsage"] == {
            "input_tokens": 20,
            "output_tokens": 30,
            "total_tokens": 50,
        }
        assert [event.name for event in span.events][:2] == ["message_start", "content_block_start"]

    def test_usage_from_headers_when_nothing_else(self, capture, client, http):
        """No usage in the chunks or metrics: the token-count headers are used."""
        http.add_stream(
            [chunk_event({"outputs": [{"text": "Hi", "stop_reason": "stop"}]})],
            headers={
                "x-amzn-bedrock-input-token-count": "5",
                "x-amzn-bedrock-output-token-count": "1",
            },
        )
        list(
            client.invoke_model_with_response_stream(
                modelId="mistral.mistral-7b-instruct-v0:2", body=b'{"prompt": "Hi"}'
            )["body"]
        )
        (span,) = capture.spans
        assert span.attributes["bedrock_trace.usage_source"] == "headers"
        assert span.outputs == {"outputs": [{"text": "Hi", "stop_reason": "stop"}]}

    def test_chunk_that_is_not_json(self, capture, client, http):
        """A chunk whose bytes are not JSON passes to the caller and is kept in the output."""
        http.add_stream([chunk_event(b"\x00not json")])
        events = list(
            client.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(CLAUDE_BODY))[
                "body"
            ]
        )
        assert events == [{"chunk": {"bytes": b"\x00not json"}}]
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK
        assert span.outputs["unknownChunks"] == ["\x00not json"]


class TestFutureEvents:
    """Event types this version does not know are passed on, recorded and never fatal."""

    def test_event_type_added_to_the_model_later(self, capture, tmp_path):
        """A new event type in botocore's model: the caller gets it; it is recorded and kept."""

        def add_future_event(model):
            model["shapes"]["FutureEvent"] = {
                "type": "structure",
                "event": True,
                "members": {"note": {"shape": "String"}},
            }
            output = model["shapes"][model["operations"]["ConverseStream"]["output"]["shape"]]
            stream_shape = output["members"]["stream"]["shape"]
            model["shapes"][stream_shape]["members"]["futureEvent"] = {"shape": "FutureEvent"}

        session = session_with_model_change(tmp_path, add_future_event)
        bedrock_trace.register(session)
        client = session.create_client(
            "bedrock-runtime", region_name="us-east-1", config=ONE_ATTEMPT
        )
        messages = converse_stream_messages("Hi")
        messages.insert(2, event_message("futureEvent", {"note": "from the future"}))
        with HttpStub(client) as http:
            http.add_stream(messages)
            events = list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
        assert {"futureEvent": {"note": "from the future"}} in events
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK
        assert "futureEvent" in [event.name for event in span.events]
        assert span.outputs["unknownEvents"] == [{"futureEvent": {"note": "from the future"}}]
        assert span.outputs["output"]["message"]["content"] == [{"text": "Hi"}]

    def test_event_type_unknown_to_botocore(self, capture, client, http):
        """An event type botocore's model lacks is dropped by botocore; tracing is unaffected."""
        messages = converse_stream_messages("Hi")
        messages.insert(1, event_message("eventFromTheFarFuture", {"x": 1}))
        http.add_stream(messages)
        events = list(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
        assert len(events) == len(messages) - 1
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK
        assert span.outputs["output"]["message"]["content"] == [{"text": "Hi"}]


class TestStreamParents:
    """Stream spans nest under the caller's span and are never made current."""

    def test_stream_consumed_after_parent_ended(self, capture, client, http):
        """A stream returned out of an agent span and read later still lands in that trace."""
        import mlflow

        http.add_stream(converse_stream_messages("Hi"))
        with mlflow.start_span("agent") as parent:
            stream = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]
            assert mlflow.get_current_active_span().span_id == parent.span_id
        list(stream)
        (trace,) = capture.traces
        names = {span.name: span for span in trace.data.spans}
        assert names["BedrockRuntime.converse_stream"].parent_id == parent.span_id
