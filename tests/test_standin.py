"""The Bedrock Runtime stand-in, driven by real boto3 clients over HTTP."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import mlflow
import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EventStreamError,
    ResponseStreamingError,
)
from mlflow.entities import SpanType

import bedrock_trace
from bedrock_trace.standin import (
    Drop,
    Reply,
    Rule,
    Scenario,
    ServiceError,
    Slow,
    StandIn,
    StreamError,
    ToolUse,
    main,
)
from bedrock_trace.standin._server import _Handler

CLAUDE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
NOVA = "amazon.nova-lite-v1:0"
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})
WEATHER_TOOLS = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "inputSchema": {
                    "json": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    }
                },
            }
        }
    ]
}


def user(text: str) -> list[dict[str, Any]]:
    """A one-message conversation."""
    return [{"role": "user", "content": [{"text": text}]}]


def claude_body(text: str = "Tell me a story", **extra: Any) -> str:
    """An Anthropic messages request body, JSON-encoded."""
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }
    return json.dumps(body)


def make_client(server: StandIn, config: Config = ONE_ATTEMPT, **session: Any) -> Any:
    """A bedrock-runtime client with dummy credentials, pointed at the stand-in."""
    return boto3.Session(
        aws_access_key_id="AKIAFAKE",
        aws_secret_access_key="fake",
        region_name="us-east-1",
        **session,
    ).client("bedrock-runtime", endpoint_url=server.endpoint_url, config=config)


def chunks_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The decoded JSON chunks of an invoke_model_with_response_stream response."""
    return [json.loads(event["chunk"]["bytes"]) for event in response["body"]]


def drain(events: Any, received: list[Any]) -> None:
    """Read a stream's events into ``received`` until it ends or raises."""
    for event in events:
        received.append(event)


def post(server: StandIn, path: str, body: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A raw HTTP POST, for what botocore cannot send."""
    request = urllib.request.Request(server.endpoint_url + path, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture
def server() -> Iterator[StandIn]:
    """A stand-in with no rules (default replies only)."""
    with StandIn() as running:
        yield running


@pytest.fixture
def client(server: StandIn) -> Any:
    """A client of ``server``, one attempt per call."""
    return make_client(server)


class TestConverse:
    """Converse: the body, the headers and the model id in the path."""

    def test_default_reply_echoes_the_last_user_message(self, server, client):
        """Without rules the assistant says back what the user said, with usage and latency."""
        response = client.converse(modelId=NOVA, messages=user("Hello there"))
        assert response["output"]["message"] == {
            "role": "assistant",
            "content": [{"text": "You said: Hello there"}],
        }
        assert response["stopReason"] == "end_turn"
        usage = response["usage"]
        assert usage["inputTokens"] > 0
        assert usage["outputTokens"] > 0
        assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
        assert response["metrics"]["latencyMs"] >= 1

    def test_scripted_reply_sets_text_stop_reason_and_usage(self):
        """A rule's reply gives the text, stop reason, token counts and latency."""
        reply = Reply(
            text="Short.",
            stop_reason="max_tokens",
            input_tokens=12,
            output_tokens=3,
            cache_read_tokens=100,
            latency_ms=250,
        )
        with StandIn([Rule(operation="converse", reply=reply)]) as server:
            response = make_client(server).converse(modelId=NOVA, messages=user("Hi"))
        assert response["output"]["message"]["content"] == [{"text": "Short."}]
        assert response["stopReason"] == "max_tokens"
        assert response["usage"] == {
            "inputTokens": 12,
            "outputTokens": 3,
            "totalTokens": 15,
            "cacheReadInputTokens": 100,
        }
        assert response["metrics"] == {"latencyMs": 250}

    def test_tool_uses_become_tool_use_blocks(self):
        """Scripted tool uses come back as toolUse blocks, stop reason tool_use."""
        reply = Reply(tool_uses=[ToolUse("lookup", {"q": "x"}, tool_use_id="t-1")])
        with StandIn([{"reply": reply}]) as server:
            response = make_client(server).converse(modelId=NOVA, messages=user("Hi"))
        assert response["output"]["message"]["content"] == [
            {"toolUse": {"toolUseId": "t-1", "name": "lookup", "input": {"q": "x"}}}
        ]
        assert response["stopReason"] == "tool_use"

    def test_each_response_has_a_fresh_request_id(self, server, client):
        """x-amzn-requestid is a new UUID each time, and botocore reads it as the RequestId."""
        first = client.converse(modelId=NOVA, messages=user("a"))["ResponseMetadata"]
        second = client.converse(modelId=NOVA, messages=user("b"))["ResponseMetadata"]
        assert first["RequestId"] != second["RequestId"]
        assert str(uuid.UUID(first["RequestId"])) == first["RequestId"]
        assert first["HTTPHeaders"]["x-amzn-requestid"] == first["RequestId"]
        assert first["HTTPHeaders"]["content-type"] == "application/json"
        assert server.requests[0].request_id == first["RequestId"]

    def test_arn_model_id_arrives_decoded(self, server, client):
        """A model ARN, percent-encoded in the path by botocore, is recorded decoded."""
        arn = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
        client.converse(modelId=arn, messages=user("Hi"))
        (request,) = server.requests
        assert request.model_id == arn
        assert "%2F" in request.path


class TestConverseStream:
    """ConverseStream: the event sequence, in AWS event-stream framing."""

    def test_text_streams_as_deltas_between_start_and_metadata(self):
        """messageStart, one delta per piece, contentBlockStop, messageStop, metadata."""
        reply = Reply(text="abcdef", pieces=3, input_tokens=7, output_tokens=2, latency_ms=40)
        with StandIn([{"operation": "converse_stream", "reply": reply}]) as server:
            response = make_client(server).converse_stream(modelId=NOVA, messages=user("x"))
            events = list(response["stream"])
        assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == (
            "application/vnd.amazon.eventstream"
        )
        assert events == [
            {"messageStart": {"role": "assistant"}},
            {"contentBlockDelta": {"delta": {"text": "ab"}, "contentBlockIndex": 0}},
            {"contentBlockDelta": {"delta": {"text": "cd"}, "contentBlockIndex": 0}},
            {"contentBlockDelta": {"delta": {"text": "ef"}, "contentBlockIndex": 0}},
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": "end_turn"}},
            {
                "metadata": {
                    "usage": {"inputTokens": 7, "outputTokens": 2, "totalTokens": 9},
                    "metrics": {"latencyMs": 40},
                }
            },
        ]

    def test_tool_use_streams_as_its_own_block(self):
        """A tool use has contentBlockStart (id, name) and its input JSON as a delta."""
        reply = Reply(text="Checking.", tool_uses=[{"name": "get_weather", "input": {"c": 1}}])
        with StandIn([{"reply": reply}]) as server:
            response = make_client(server).converse_stream(modelId=NOVA, messages=user("x"))
            events = list(response["stream"])
        start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
        assert start["contentBlockIndex"] == 1
        assert start["start"]["toolUse"]["name"] == "get_weather"
        assert start["start"]["toolUse"]["toolUseId"].startswith("tooluse_")
        tool_deltas = [
            e["contentBlockDelta"]["delta"]["toolUse"]["input"]
            for e in events
            if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {})
        ]
        assert json.loads("".join(tool_deltas)) == {"c": 1}
        assert {"messageStop": {"stopReason": "tool_use"}} in events


class TestInvokeModel:
    """InvokeModel: model-family bodies and Bedrock's token-count headers."""

    def test_anthropic_body_and_token_headers(self):
        """An Anthropic request gets a messages response and the x-amzn-bedrock-* headers."""
        reply = Reply(text="Once upon a time.", input_tokens=21, output_tokens=6, latency_ms=321)
        with StandIn([{"operation": "invoke_model", "reply": reply}]) as server:
            response = make_client(server).invoke_model(modelId=CLAUDE, body=claude_body())
        body = json.loads(response["body"].read())
        assert body["type"] == "message"
        assert body["role"] == "assistant"
        assert body["model"] == "claude-3-5-haiku-20241022"
        assert body["content"] == [{"type": "text", "text": "Once upon a time."}]
        assert body["stop_reason"] == "end_turn"
        assert body["usage"] == {"input_tokens": 21, "output_tokens": 6}
        assert response["contentType"] == "application/json"
        headers = response["ResponseMetadata"]["HTTPHeaders"]
        assert headers["x-amzn-bedrock-input-token-count"] == "21"
        assert headers["x-amzn-bedrock-output-token-count"] == "6"
        assert headers["x-amzn-bedrock-invocation-latency"] == "321"

    def test_anthropic_default_echoes_string_content(self, server, client):
        """The default reply reads Anthropic string content too."""
        response = client.invoke_model(modelId=CLAUDE, body=claude_body("Hi Claude"))
        body = json.loads(response["body"].read())
        assert body["content"] == [{"type": "text", "text": "You said: Hi Claude"}]

    @pytest.mark.parametrize(
        ("model_id", "request_body", "read"),
        [
            (
                NOVA,
                {"schemaVersion": "messages-v1", "messages": user("Hey")},
                lambda b: b["output"]["message"]["content"][0]["text"],
            ),
            (
                "amazon.titan-text-express-v1",
                {"inputText": "Hey"},
                lambda b: b["results"][0]["outputText"],
            ),
            ("meta.llama3-8b-instruct-v1:0", {"prompt": "Hey"}, lambda b: b["generation"]),
            (
                "openai.gpt-oss-20b-1:0",
                {"messages": [{"role": "user", "content": "Hey"}]},
                lambda b: b["choices"][0]["message"]["content"],
            ),
        ],
        ids=["nova", "titan", "llama", "openai"],
    )
    def test_other_families_get_their_own_body_shape(
        self, server, client, model_id, request_body, read
    ):
        """Nova, Titan Text, Llama and OpenAI-style models answer in their own format."""
        response = client.invoke_model(modelId=model_id, body=json.dumps(request_body))
        assert read(json.loads(response["body"].read())) == "You said: Hey"

    def test_body_override_is_sent_verbatim(self):
        """``Reply.body`` replaces the generated body."""
        with StandIn([{"reply": {"body": {"custom": [1, 2]}}}]) as server:
            response = make_client(server).invoke_model(modelId=CLAUDE, body=claude_body())
            body = response["body"].read()  # while the server still runs: it closes on exit
        assert json.loads(body) == {"custom": [1, 2]}


class TestInvokeModelWithResponseStream:
    """InvokeModelWithResponseStream: Anthropic streaming chunks in ``chunk`` events."""

    def test_anthropic_chunks_end_with_invocation_metrics(self):
        """message_start ... message_stop, the last one carrying Bedrock's invocation metrics."""
        reply = Reply(text="Hi there", input_tokens=9, output_tokens=2, latency_ms=77)
        with StandIn([{"reply": reply}]) as server:
            response = make_client(server).invoke_model_with_response_stream(
                modelId=CLAUDE, body=claude_body()
            )
            chunks = chunks_of(response)
        assert response["contentType"] == "application/json"
        assert [c["type"] for c in chunks] == [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        assert chunks[0]["message"]["usage"]["input_tokens"] == 9
        text = "".join(c["delta"]["text"] for c in chunks if c["type"] == "content_block_delta")
        assert text == "Hi there"
        assert chunks[-2]["delta"]["stop_reason"] == "end_turn"
        assert chunks[-2]["usage"] == {"output_tokens": 2}
        metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
        assert metrics["inputTokenCount"] == 9
        assert metrics["outputTokenCount"] == 2
        assert metrics["invocationLatency"] == 77
        assert 1 <= metrics["firstByteLatency"] <= 77

    def test_tool_use_streams_as_input_json_deltas(self):
        """An Anthropic tool_use block's input arrives as input_json_delta."""
        reply = Reply(tool_uses=[ToolUse("get_weather", {"city": "Oslo"})])
        with StandIn([{"reply": reply}]) as server:
            chunks = chunks_of(
                make_client(server).invoke_model_with_response_stream(
                    modelId=CLAUDE, body=claude_body()
                )
            )
        (start,) = [c for c in chunks if c["type"] == "content_block_start"]
        assert start["content_block"]["type"] == "tool_use"
        assert start["content_block"]["id"].startswith("toolu_bdrk_")
        partial = [c["delta"]["partial_json"] for c in chunks if c["type"] == "content_block_delta"]
        assert json.loads("".join(partial)) == {"city": "Oslo"}
        assert chunks[-2]["delta"]["stop_reason"] == "tool_use"

    def test_nova_streams_converse_style_chunks(self, server, client):
        """A Nova stream has the ConverseStream event names as chunk keys."""
        body = json.dumps({"schemaVersion": "messages-v1", "messages": user("Yo")})
        response = client.invoke_model_with_response_stream(modelId=NOVA, body=body)
        chunks = chunks_of(response)
        assert next(iter(chunks[0])) == "messageStart"
        assert "metadata" in chunks[-1]
        assert "amazon-bedrock-invocationMetrics" in chunks[-1]


class TestApplyGuardrail:
    """ApplyGuardrail: the guardrail route and its response."""

    def test_default_takes_no_action(self, server, client):
        """Without rules the guardrail lets the content through, with usage and coverage."""
        response = client.apply_guardrail(
            guardrailIdentifier="gr-abc",
            guardrailVersion="DRAFT",
            source="INPUT",
            content=[{"text": {"text": "hello"}}],
        )
        assert response["action"] == "NONE"
        assert response["outputs"] == []
        assert response["usage"]["topicPolicyUnits"] == 1
        assert response["guardrailCoverage"]["textCharacters"] == {"guarded": 5, "total": 5}
        (request,) = server.requests
        assert (request.operation, request.guardrail_id, request.guardrail_version) == (
            "apply_guardrail",
            "gr-abc",
            "DRAFT",
        )
        assert request.user_text == "hello"

    def test_intervention_replaces_the_output(self):
        """A reply with GUARDRAIL_INTERVENED sends its text as the output and a blocked topic."""
        rule = {
            "operation": "ApplyGuardrail",
            "model": "gr-abc",
            "reply": {"guardrail_action": "GUARDRAIL_INTERVENED", "text": "Blocked."},
        }
        with StandIn([rule]) as server:
            response = make_client(server).apply_guardrail(
                guardrailIdentifier="gr-abc",
                guardrailVersion="1",
                source="OUTPUT",
                content=[{"text": {"text": "bad words"}}],
            )
        assert response["action"] == "GUARDRAIL_INTERVENED"
        assert response["outputs"] == [{"text": "Blocked."}]
        topic = response["assessments"][0]["topicPolicy"]["topics"][0]
        assert topic["action"] == "BLOCKED"


class TestCountTokens:
    """CountTokens: an estimate of the request's input tokens."""

    def test_counts_converse_input(self, server, client):
        """The count is positive and scripted counts win."""
        response = client.count_tokens(modelId=CLAUDE, input={"converse": {"messages": user("x")}})
        assert response["inputTokens"] >= 1
        server.reset([{"reply": {"input_tokens": 42}}])
        response = client.count_tokens(modelId=CLAUDE, input={"converse": {"messages": user("x")}})
        assert response["inputTokens"] == 42


class TestThrottle:
    """``throttle``: 429 ThrottlingException N times, then the rule's answer."""

    def test_throttled_twice_then_succeeds_after_retries(self):
        """botocore retries the 429s and reports two retry attempts."""
        retrying = Config(retries={"mode": "standard", "max_attempts": 3})
        scenario = [{"operation": "converse", "throttle": 2, "reply": {"text": "Finally."}}]
        with StandIn(scenario) as server:
            response = make_client(server, retrying).converse(modelId=NOVA, messages=user("x"))
            outcomes = [(r.outcome, r.status) for r in server.requests]
        assert response["output"]["message"]["content"] == [{"text": "Finally."}]
        assert response["ResponseMetadata"]["RetryAttempts"] == 2
        assert outcomes == [("throttle", 429), ("throttle", 429), ("reply", 200)]

    def test_without_retries_the_modeled_exception_is_raised(self):
        """One attempt: ThrottlingException, status 429, Bedrock's message."""
        with StandIn([{"throttle": 1}]) as server:
            client = make_client(server)
            with pytest.raises(client.exceptions.ThrottlingException) as caught:
                client.converse(modelId=NOVA, messages=user("x"))
            client.converse(modelId=NOVA, messages=user("x"))  # the throttle is used up
        error = caught.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert error["Error"]["Code"] == "ThrottlingException"
        assert error["Error"]["Message"] == "Too many requests, please wait before trying again."

    def test_streaming_operations_are_throttled_before_the_stream(self):
        """A throttled converse_stream fails with the HTTP error, not an event."""
        with StandIn([{"operation": "converse_stream", "throttle": 1}]) as server:
            client = make_client(server)
            with pytest.raises(client.exceptions.ThrottlingException):
                client.converse_stream(modelId=NOVA, messages=user("x"))


class TestClientsThatLeave:
    """A client dropping its keep-alive connection is not an error of the stand-in."""

    def test_a_reset_connection_logs_no_error(self, server, caplog):
        """An abrupt close (a TCP reset, as a client closing with unread bytes sends) while the
        stand-in waits for the connection's next request is logged at DEBUG, not as an error."""
        caplog.set_level(logging.DEBUG, logger="bedrock_trace.standin")
        host, port = server.endpoint_url.removeprefix("http://").split(":")
        before = {t for t in threading.enumerate() if "process_request" in t.name}
        body = json.dumps({"messages": user("hi")}).encode()
        request = (
            b"POST /model/m/converse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(request)
            reply = conn.makefile("rb")
            assert reply.readline().startswith(b"HTTP/1.1 200")
            headers = {}
            while (line := reply.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            reply.read(int(headers["content-length"]))  # the connection stays open: keep-alive
            reply.close()
            assert headers.get("connection", "").lower() != "close"
            # SO_LINGER with a zero timeout: close() sends a reset instead of a FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for thread in threading.enumerate():
            if "process_request" in thread.name and thread not in before:
                thread.join(10)  # the connection's handler has seen the reset and ended
        errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert errors == []
        assert any("closed the connection abruptly" in r.getMessage() for r in caplog.records)


class TestServiceError:
    """``error``: any code, status and message, as an AWS REST-JSON error."""

    def test_validation_exception_is_the_modeled_exception(self):
        """ValidationException, 400, the scripted message and the error-type header."""
        rule = {"operation": "converse", "error": {"code": "ValidationException", "message": "No."}}
        with StandIn([rule]) as server:
            client = make_client(server)
            with pytest.raises(client.exceptions.ValidationException) as caught:
                client.converse(modelId=NOVA, messages=user("x"))
        response = caught.value.response
        assert response["Error"] == {"Code": "ValidationException", "Message": "No."}
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
        headers = response["ResponseMetadata"]["HTTPHeaders"]
        assert headers["x-amzn-errortype"].startswith("ValidationException:")
        uuid.UUID(headers["x-amzn-requestid"])

    @pytest.mark.parametrize(
        ("code", "status"),
        [
            ("AccessDeniedException", 403),
            ("ResourceNotFoundException", 404),
            ("ModelTimeoutException", 408),
            ("ModelErrorException", 424),
            ("InternalServerException", 500),
            ("ServiceUnavailableException", 503),
        ],
    )
    def test_modeled_codes_get_their_status(self, code, status):
        """Each modeled error code is sent with Bedrock's status and raised as its class."""
        with StandIn([{"error": code}]) as server:
            client = make_client(server)
            with pytest.raises(getattr(client.exceptions, code)) as caught:
                client.invoke_model(modelId=CLAUDE, body=claude_body())
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status

    def test_any_code_and_status(self):
        """An unmodeled code with a chosen status still becomes a ClientError with that code."""
        error = ServiceError("TeapotException", "short and stout", status=418)
        with StandIn([Rule(error=error)]) as server, pytest.raises(ClientError) as caught:
            make_client(server).converse(modelId=NOVA, messages=user("x"))
        assert caught.value.response["Error"]["Code"] == "TeapotException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 418

    def test_errors_a_limited_number_of_times(self):
        """An error rule with ``times`` gives way to the default reply afterwards."""
        with StandIn([{"error": "ServiceUnavailableException", "times": 1}]) as server:
            client = make_client(server)
            with pytest.raises(client.exceptions.ServiceUnavailableException):
                client.converse(modelId=NOVA, messages=user("x"))
            assert client.converse(modelId=NOVA, messages=user("x"))["stopReason"] == "end_turn"


class TestStreamError:
    """``stream_error``: a stream that fails with an exception event after K events."""

    def test_converse_stream_raises_after_k_events(self):
        """Three events arrive, then botocore raises EventStreamError with the exception name."""
        rule = {"operation": "converse_stream", "stream_error": {"after": 3, "message": "Boom"}}
        with StandIn([rule]) as server:
            response = make_client(server).converse_stream(modelId=NOVA, messages=user("a b c d"))
            received = []
            with pytest.raises(EventStreamError) as caught:
                drain(response["stream"], received)
        assert len(received) == 3
        assert caught.value.response["Error"] == {
            "Code": "modelStreamErrorException",
            "Message": "Boom",
        }

    def test_invoke_stream_raises_with_the_chosen_exception(self):
        """Any exception member can be sent, here throttlingException after one chunk."""
        error = StreamError(after=1, exception="ThrottlingException")
        with StandIn([Rule(stream_error=error)]) as server:
            response = make_client(server).invoke_model_with_response_stream(
                modelId=CLAUDE, body=claude_body()
            )
            received = []
            with pytest.raises(EventStreamError) as caught:
                drain(response["body"], received)
        assert len(received) == 1
        assert caught.value.response["Error"]["Code"] == "throttlingException"


class TestSlow:
    """``slow``: delays before the headers and before each stream event."""

    def test_per_chunk_delay_spaces_the_events(self):
        """Seven events 0.15 s apart take at least about 0.9 s from first to last."""
        rule = {"reply": {"text": "one two three"}, "slow": {"per_chunk": 0.15}}
        with StandIn([rule]) as server:
            response = make_client(server).converse_stream(modelId=NOVA, messages=user("x"))
            arrivals = [time.monotonic() for _event in response["stream"]]
        assert len(arrivals) == 7
        assert arrivals[-1] - arrivals[0] >= 6 * 0.15 * 0.8
        gaps = sorted(later - earlier for earlier, later in itertools.pairwise(arrivals))
        assert gaps[len(gaps) // 2] >= 0.15 * 0.5  # separate writes, not one burst at the end

    def test_delay_before_headers(self):
        """The call takes at least the delay before the headers."""
        with StandIn([Rule(slow=Slow(before_headers=0.4))]) as server:
            client = make_client(server)
            started = time.monotonic()
            client.converse(modelId=NOVA, messages=user("x"))
            assert time.monotonic() - started >= 0.4 * 0.8

    def test_read_timeout_fires_on_a_slow_chunk(self):
        """A chunk later than botocore's read timeout surfaces as a read timeout."""
        rule = {"slow": {"per_chunk": 1.5}}
        config = Config(read_timeout=0.3, retries={"mode": "standard", "total_max_attempts": 1})
        with StandIn([rule]) as server:
            response = make_client(server, config).converse_stream(modelId=NOVA, messages=user("x"))
            with pytest.raises(urllib3.exceptions.ReadTimeoutError):
                list(response["stream"])


class TestDrop:
    """``drop``: the connection closes mid-response."""

    def test_stream_drops_after_k_events(self):
        """Two events arrive, then the body ends prematurely."""
        with StandIn([{"operation": "converse_stream", "drop": {"after": 2}}]) as server:
            response = make_client(server).converse_stream(modelId=NOVA, messages=user("a b c"))
            received = []
            with pytest.raises(urllib3.exceptions.ProtocolError):
                drain(response["stream"], received)
            assert len(received) == 2
            assert server.requests[0].outcome == "drop"

    def test_invoke_stream_drop(self):
        """invoke_model_with_response_stream drops the same way."""
        with StandIn([Rule(drop=Drop(after=1))]) as server:
            response = make_client(server).invoke_model_with_response_stream(
                modelId=CLAUDE, body=claude_body()
            )
            with pytest.raises(urllib3.exceptions.ProtocolError):
                list(response["body"])

    def test_non_streaming_drop_closes_before_any_response(self):
        """botocore sees the connection closed; the next request works on a new connection."""
        with StandIn([{"operation": "converse", "drop": 0, "times": 1}]) as server:
            client = make_client(server)
            with pytest.raises(ConnectionClosedError):
                client.converse(modelId=NOVA, messages=user("x"))
            client.converse(modelId=NOVA, messages=user("x"))
            first, second = server.requests
        assert (first.outcome, first.status) == ("drop", 0)
        assert second.connection != first.connection


class TestRules:
    """Rule matching, order, and one-shot versus repeating rules."""

    def test_first_matching_rule_answers(self):
        """Rules are tried in order; conditions on operation, model and text all apply."""
        scenario = [
            {"operation": "invoke_model", "reply": {"text": "invoke"}},
            {"model": "anthropic", "reply": {"text": "claude"}},
            {"contains": "PARIS", "reply": {"text": "paris"}},
            {"reply": {"text": "anything"}},
        ]
        with StandIn(scenario) as server:
            client = make_client(server)

            def text(model: str, words: str) -> str:
                response = client.converse(modelId=model, messages=user(words))
                return str(response["output"]["message"]["content"][0]["text"])

            assert text(CLAUDE, "in Paris") == "claude"
            assert text(NOVA, "in Paris") == "paris"
            assert text(NOVA, "in Rome") == "anything"
            assert [r.rule for r in server.requests] == [1, 2, 3]

    def test_one_shot_rule_is_used_once(self):
        """``times: 1`` answers once; later requests fall through to the default."""
        with StandIn([{"times": 1, "reply": {"text": "once"}}]) as server:
            client = make_client(server)
            texts = [
                client.converse(modelId=NOVA, messages=user("hi"))["output"]["message"]["content"]
                for _ in range(2)
            ]
        assert texts == [[{"text": "once"}], [{"text": "You said: hi"}]]

    def test_throttles_do_not_count_toward_times(self):
        """``throttle: 1, times: 1``: one 429, one reply, then the rule is exhausted."""
        with StandIn([{"throttle": 1, "times": 1, "reply": {"text": "ok"}}]) as server:
            client = make_client(server)
            with pytest.raises(client.exceptions.ThrottlingException):
                client.converse(modelId=NOVA, messages=user("hi"))
            assert client.converse(modelId=NOVA, messages=user("hi"))["output"]["message"][
                "content"
            ] == [{"text": "ok"}]
            client.converse(modelId=NOVA, messages=user("hi"))
            assert [r.rule for r in server.requests] == [0, 0, None]

    def test_tool_result_condition(self):
        """``tool_result`` tells the agent's first call from the one after the tool ran."""
        scenario = [
            {"tool_result": True, "reply": {"text": "after tool"}},
            {"tool_result": False, "reply": {"text": "before tool"}},
        ]
        messages = [
            *user("weather?"),
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "t1", "name": "w", "input": {}}}],
            },
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "sun"}]}}],
            },
        ]
        with StandIn(scenario) as server:
            client = make_client(server)
            first = client.converse(modelId=NOVA, messages=user("weather?"))
            second = client.converse(modelId=NOVA, messages=messages)
        assert first["output"]["message"]["content"] == [{"text": "before tool"}]
        assert second["output"]["message"]["content"] == [{"text": "after tool"}]

    def test_reply_without_content_keeps_the_default_content(self):
        """A reply that only sets usage keeps the echo."""
        with StandIn([{"reply": {"output_tokens": 900}}]) as server:
            response = make_client(server).converse(modelId=NOVA, messages=user("hi"))
        assert response["output"]["message"]["content"] == [{"text": "You said: hi"}]
        assert response["usage"]["outputTokens"] == 900

    def test_rules_added_at_runtime_and_reset(self, server, client):
        """``add`` appends rules; ``reset`` forgets requests and counters."""
        server.add({"times": 1, "reply": {"text": "added"}})
        assert client.converse(modelId=NOVA, messages=user("x"))["output"]["message"][
            "content"
        ] == [{"text": "added"}]
        server.reset()
        assert server.requests == []
        assert client.converse(modelId=NOVA, messages=user("x"))["output"]["message"][
            "content"
        ] == [{"text": "added"}]


class TestScenarioFormat:
    """Scenarios from attrs classes, plain dicts and JSON, with validation."""

    def test_json_file_loads_into_rules(self, tmp_path: Path):
        """Every fault and the reply fields load from JSON into their classes."""
        path = tmp_path / "scenario.json"
        path.write_text(
            json.dumps(
                {
                    "rules": [
                        {"operation": "ConverseStream", "stream_error": {"after": 2}},
                        {"operation": "converse", "throttle": 2, "times": 1},
                        {"operation": "invoke_model", "error": "ValidationException"},
                        {"operation": "*", "slow": {"per_chunk": 0.1}, "drop": 3},
                        {"reply": {"tool_uses": [{"name": "f", "input": {"a": 1}}]}},
                    ]
                }
            )
        )
        rules = Scenario.load(path).rules
        assert rules[0] == Rule(operation="converse_stream", stream_error=StreamError(after=2))
        assert rules[1].throttle == 2
        assert rules[1].times == 1
        assert rules[2].error == ServiceError("ValidationException")
        assert rules[2].error.http_status == 400
        assert rules[3].operation is None
        assert rules[3].slow == Slow(per_chunk=0.1)
        assert rules[3].drop == Drop(after=3)
        assert rules[4].reply == Reply(tool_uses=(ToolUse("f", {"a": 1}),))

    def test_a_bare_list_is_a_scenario(self):
        """A JSON list is the rules."""
        assert Scenario.from_json('[{"times": 1}]') == Scenario([Rule(times=1)])

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"rules": [{"operashun": "converse"}]}, "rule 0"),
            ({"rules": [{}, {"operation": "chat"}]}, "rule 1: unknown operation 'chat'"),
            ({"rules": [{"reply": {"txt": "x"}}]}, "rule 0"),
            ({"rules": [{"error": "ValidationException", "reply": {}}]}, "error excludes"),
            ({"rules": [{"times": 0}]}, "times must be at least 1"),
            ({"rules": [{"throttle": -1}]}, "must not be negative"),
            ({"rules": [{"contains": 3}]}, "contains must be a string, got 3"),
            ({"rules": [{"reply": {"guardrail_action": "BLOCK"}}]}, "guardrail_action must be"),
            ({"rulez": []}, "unknown scenario keys: rulez"),
        ],
    )
    def test_mistakes_are_reported(self, data, message):
        """Unknown keys and bad values raise ValueError naming the rule."""
        with pytest.raises(ValueError, match=message):
            Scenario.from_dict(data)


class TestDefaultAgent:
    """The default converse answers drive a tool-calling agent without configuration."""

    def run_agent(self, client: Any, question: str) -> tuple[str, list[dict[str, Any]]]:
        """The reference agent loop: converse, run the tool, converse again."""
        messages = user(question)
        first = client.converse(modelId=CLAUDE, messages=messages, toolConfig=WEATHER_TOOLS)
        assert first["stopReason"] == "tool_use"
        messages.append(first["output"]["message"])
        tool_use = first["output"]["message"]["content"][0]["toolUse"]
        result = f"Sunny, 21°C in {tool_use['input']['city']}"
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": tool_use["toolUseId"],
                            "content": [{"text": result}],
                        }
                    }
                ],
            }
        )
        final = client.converse(modelId=CLAUDE, messages=messages, toolConfig=WEATHER_TOOLS)
        assert final["stopReason"] == "end_turn"
        return final["output"]["message"]["content"][0]["text"], [tool_use]

    def test_weather_question_calls_the_tool_then_answers_from_it(self, server, client):
        """First call: toolUse get_weather {"city": "Paris"}; second: text using the result."""
        answer, (tool_use,) = self.run_agent(client, "What's the weather in Paris?")
        assert tool_use["name"] == "get_weather"
        assert tool_use["input"] == {"city": "Paris"}
        assert answer == "Here is what get_weather returned: Sunny, 21°C in Paris"
        assert [len(r.body["messages"]) for r in server.requests] == [1, 3]

    def test_unrelated_question_does_not_call_a_tool(self, server, client):
        """Tools are offered but the question is not about them: a plain echo."""
        response = client.converse(
            modelId=CLAUDE, messages=user("Tell me a joke"), toolConfig=WEATHER_TOOLS
        )
        assert response["output"]["message"]["content"] == [{"text": "You said: Tell me a joke"}]

    def test_anthropic_invoke_agent(self, server, client):
        """The same loop over invoke_model with Anthropic tools and tool_result blocks."""
        tools = [
            {
                "name": "get_weather",
                "description": "Weather.",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ]
        first = json.loads(
            client.invoke_model(
                modelId=CLAUDE, body=claude_body("Weather for Lyon please", tools=tools)
            )["body"].read()
        )
        (tool_use,) = first["content"]
        assert (tool_use["type"], tool_use["input"]) == ("tool_use", {"city": "Lyon"})
        messages = [
            {"role": "user", "content": "Weather for Lyon please"},
            {"role": "assistant", "content": first["content"]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_use["id"], "content": "Rain"}
                ],
            },
        ]
        body = json.dumps(
            {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "messages": messages}
        )
        final = json.loads(client.invoke_model(modelId=CLAUDE, body=body)["body"].read())
        assert final["content"][0]["text"] == "Here is what get_weather returned: Rain"

    def test_traced_agent_records_two_chat_spans_and_the_tool(self, server, capture):
        """With bedrock_trace registered, the stand-in agent run is one trace of four spans."""
        session = boto3.Session(
            aws_access_key_id="AKIAFAKE", aws_secret_access_key="fake", region_name="us-east-1"
        )
        bedrock_trace.register(session)
        try:
            client = session.client(
                "bedrock-runtime", endpoint_url=server.endpoint_url, config=ONE_ATTEMPT
            )

            @mlflow.trace(span_type=SpanType.TOOL)
            def get_weather(city: str) -> str:
                return f"Sunny in {city}"

            @mlflow.trace(span_type=SpanType.AGENT)
            def agent(question: str) -> str:
                messages = user(question)
                first = client.converse(modelId=CLAUDE, messages=messages, toolConfig=WEATHER_TOOLS)
                messages.append(first["output"]["message"])
                tool_use = first["output"]["message"]["content"][0]["toolUse"]
                result = get_weather(**tool_use["input"])
                messages.append(
                    {
                        "role": "user",
                        "content": [
                            {
                                "toolResult": {
                                    "toolUseId": tool_use["toolUseId"],
                                    "content": [{"text": result}],
                                }
                            }
                        ],
                    }
                )
                final = client.converse(modelId=CLAUDE, messages=messages, toolConfig=WEATHER_TOOLS)
                return str(final["output"]["message"]["content"][0]["text"])

            assert agent("What's the weather in Paris?").endswith("Sunny in Paris")
        finally:
            bedrock_trace.unregister(session)
        (trace,) = capture.traces
        assert [span.name for span in trace.data.spans] == [
            "agent",
            "BedrockRuntime.converse",
            "get_weather",
            "BedrockRuntime.converse",
        ]


class TestRecording:
    """What the stand-in keeps of each request."""

    def test_records_operation_model_body_and_headers_without_credentials(self, server):
        """The parsed body and headers are kept; Authorization and the token are not."""
        client = make_client(server, aws_session_token="fake-session-token")
        client.converse(modelId=NOVA, messages=user("Hi"), inferenceConfig={"maxTokens": 5})
        (request,) = server.requests
        assert request.operation == "converse"
        assert request.model_id == NOVA
        assert request.body == {"messages": user("Hi"), "inferenceConfig": {"maxTokens": 5}}
        assert json.loads(request.raw_body) == request.body
        assert request.user_text == "Hi"
        assert (request.rule, request.outcome, request.status) == (None, "reply", 200)
        assert "authorization" not in request.headers
        assert "x-amz-security-token" not in request.headers
        assert request.headers["content-type"] == "application/json"
        assert "fake-session-token" not in repr(request.headers)
        assert server.requests_for("Converse") == [request]
        assert server.requests_for("invoke_model") == []

    def test_unknown_route_is_a_404_unknown_operation(self, server):
        """Anything else gets UnknownOperationException and is recorded as ``unknown``."""
        status, headers, body = post(server, "/async-invoke", b"{}")
        assert status == 404
        assert headers["x-amzn-errortype"].startswith("UnknownOperationException:")
        assert "message" in body
        assert server.requests[0].operation == "unknown"

    def test_malformed_json_is_a_validation_exception(self, server):
        """A body that is not JSON is refused as Bedrock refuses it."""
        status, headers, body = post(server, "/model/m/converse", b"{not json")
        assert status == 400
        assert headers["x-amzn-errortype"].startswith("ValidationException:")
        assert body["message"].startswith("Malformed input request")


class TestKeepAlive:
    """HTTP/1.1 keep-alive: botocore's pooled connection is reused across calls."""

    def test_calls_and_fully_read_streams_share_one_connection(self, server, client):
        """Sequential calls, streams included, all arrive on the first connection."""
        client.converse(modelId=NOVA, messages=user("a"))
        list(client.converse_stream(modelId=NOVA, messages=user("b"))["stream"])
        client.invoke_model(modelId=CLAUDE, body=claude_body())["body"].read()
        list(client.invoke_model_with_response_stream(modelId=CLAUDE, body=claude_body())["body"])
        client.converse(modelId=NOVA, messages=user("c"))
        assert {request.connection for request in server.requests} == {1}

    def test_concurrent_clients_are_served_in_parallel(self):
        """A slow request does not hold up another client's request."""
        with StandIn([{"contains": "slow", "slow": {"before_headers": 1.0}}]) as server:
            slow_done = threading.Event()

            def slow_call() -> None:
                make_client(server).converse(modelId=NOVA, messages=user("slow"))
                slow_done.set()

            thread = threading.Thread(target=slow_call)
            thread.start()
            make_client(server).converse(modelId=NOVA, messages=user("fast"))
            assert not slow_done.is_set()
            thread.join(10)
            assert slow_done.is_set()


class TestLifecycle:
    """Starting, stopping and pointing clients at the stand-in."""

    def test_port_zero_picks_a_free_port_and_stop_frees_it(self):
        """endpoint_url names the picked port; after stop nothing listens there."""
        server = StandIn()
        with pytest.raises(RuntimeError):
            _ = server.endpoint_url
        server.start()
        try:
            assert server.running
            assert server.port > 0
            assert server.endpoint_url == f"http://127.0.0.1:{server.port}"
            make_client(server).converse(modelId=NOVA, messages=user("x"))
        finally:
            server.stop()
        assert not server.running
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=2)

    def test_stop_ends_idle_keep_alive_connections(self):
        """Handler threads waiting on pooled connections exit when the server stops."""
        before = set(threading.enumerate())
        with StandIn() as server:
            client = make_client(server)  # kept: its pool holds the connection open
            client.converse(modelId=NOVA, messages=user("x"))
            handlers = [
                t
                for t in threading.enumerate()
                if t not in before
                and ("process_request" in t.name or t.name.startswith("bedrock-standin"))
            ]
            assert len(handlers) == 2  # the serve loop and the kept-alive connection's handler
        for thread in handlers:
            thread.join(5)
            assert not thread.is_alive()

    def test_stop_interrupts_a_slow_reply(self):
        """Stopping does not wait out a long scripted delay."""
        server = StandIn([{"slow": {"before_headers": 30}}]).start()
        config = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=20)
        client = make_client(server, config)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                client.converse(modelId=NOVA, messages=user("x"))
            except Exception as exc:
                errors.append(exc)

        thread = threading.Thread(target=call)
        thread.start()
        time.sleep(0.3)
        started = time.monotonic()
        server.stop()
        thread.join(10)
        assert time.monotonic() - started < 5
        assert not thread.is_alive()
        assert errors  # the connection closed without an answer

    def test_stop_lets_a_reply_being_written_finish(self, monkeypatch):
        """A body already on its way reaches a client that reads it after stop(): stop waits
        for a reply being written, with a pause between its headers and its body (a thread
        switch there made an invoke_model body read after stop() come back empty)."""
        send_head = _Handler.send_head

        def slow_send_head(handler: _Handler, status: int, headers: Any) -> None:
            send_head(handler, status, headers)
            time.sleep(0.5)

        monkeypatch.setattr(_Handler, "send_head", slow_send_head)
        with StandIn() as server:
            response = make_client(server).invoke_model(modelId=CLAUDE, body=claude_body("Hi"))
            stream = make_client(server).converse_stream(modelId=NOVA, messages=user("streamed"))
        body = json.loads(response["body"].read())
        assert body["content"] == [{"type": "text", "text": "You said: Hi"}]
        events = list(stream["stream"])
        assert "messageStop" in events[-2]
        assert "metadata" in events[-1]
        deltas = [e["contentBlockDelta"]["delta"] for e in events if "contentBlockDelta" in e]
        assert "".join(d["text"] for d in deltas) == "You said: streamed"

    def test_stop_gives_up_on_a_reply_that_cannot_be_written(self, monkeypatch):
        """A reply stuck in its write (a client that stopped reading) holds stop() for a
        bounded grace period only; the connection is then closed."""
        release = threading.Event()
        send_head = _Handler.send_head

        def stuck_send_head(handler: _Handler, status: int, headers: Any) -> None:
            send_head(handler, status, headers)
            release.wait(30)

        monkeypatch.setattr(_Handler, "send_head", stuck_send_head)
        monkeypatch.setattr(StandIn, "stop_grace", 0.5)
        server = StandIn().start()
        try:
            response = make_client(server).invoke_model(modelId=CLAUDE, body=claude_body("Hi"))
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 3
        finally:
            release.set()
        with pytest.raises(ResponseStreamingError, match="Connection broken"):
            response["body"].read()

    def test_environ_points_a_plain_client_at_the_stand_in(self, server, monkeypatch):
        """With environ() set, a client made without endpoint_url reaches the stand-in."""
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        boto3.client("bedrock-runtime").converse(modelId=NOVA, messages=user("env"))
        assert server.requests[0].user_text == "env"


class TestCommandLine:
    """``python -m bedrock_trace.standin`` and ``main(argv)``."""

    def test_serves_a_scenario_file_until_terminated(self, tmp_path: Path):
        """The first line names the URL; a call gets the scripted reply; SIGTERM exits 0."""
        path = tmp_path / "scenario.json"
        path.write_text(json.dumps([{"reply": {"text": "from the file"}}]))
        process = subprocess.Popen(
            [sys.executable, "-m", "bedrock_trace.standin", "--port", "0", "--scenario", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert "listening on http://127.0.0.1:" in line
            url = line.rsplit(" ", 1)[-1].strip()
            client = boto3.Session(
                aws_access_key_id="AKIAFAKE", aws_secret_access_key="fake", region_name="us-east-1"
            ).client("bedrock-runtime", endpoint_url=url, config=ONE_ATTEMPT)
            response = client.converse(modelId=NOVA, messages=user("x"))
            assert response["output"]["message"]["content"] == [{"text": "from the file"}]
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0
        assert "converse amazon.nova-lite-v1:0 -> 200 reply (rule 0)" in err

    def test_bad_scenario_file_exits_2(self, tmp_path: Path, capsys):
        """An invalid scenario is reported on stderr without starting a server."""
        path = tmp_path / "bad.json"
        path.write_text('{"rules": [{"operation": "nope"}]}')
        assert main(["--port", "0", "--scenario", str(path)]) == 2
        assert "unknown operation 'nope'" in capsys.readouterr().err
