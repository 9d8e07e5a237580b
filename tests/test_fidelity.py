"""Trace fidelity: a trace is never lost, never leaks what the configuration withholds, never lies.

One class per way a trace could go wrong; each test states the trace a user must get.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading

import pytest
from botocore.stub import Stubber
from mlflow.entities import SpanStatusCode

import bedrock_trace
from bedrock_trace import TraceConfig
from bedrock_trace.testing import (
    HttpStub,
    chunk_event,
    converse_response,
    converse_stream_messages,
    expect_internal_errors,
    flush,
    invoke_model_response,
)

from .conftest import MODEL_ID, ONE_ATTEMPT, make_session

MESSAGES = [{"role": "user", "content": [{"text": "Hi"}]}]
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
GPT_OSS = "openai.gpt-oss-20b-1:0"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
TOOL_CONFIG = {
    "tools": [
        {
            "toolSpec": {
                "name": "lookup_customer_by_ssn",
                "description": "Find the customer whose SSN is 078-05-1120",
                "inputSchema": {
                    "json": {
                        "type": "object",
                        "properties": {"ssn": {"type": "string", "description": "secret-field"}},
                    }
                },
            }
        }
    ]
}
TOOL_SECRETS = ("lookup_customer_by_ssn", "078-05-1120", "secret-field")


def _dump(span) -> str:
    return json.dumps(span.to_dict())


def _recorded_chars(value) -> int:
    """The size of a payload as MLflow stores it (JSON, non-ASCII kept as is)."""
    return len(json.dumps(value, ensure_ascii=False))


class TestContentControlsCoverTools:
    """capture_content=False and the redact hook govern mlflow.chat.tools too."""

    @staticmethod
    def converse_with_tools(capture, client, stubber, config):
        """One converse call with TOOL_CONFIG; its span, checked free of every tool secret."""
        bedrock_trace.register(client, config=config)
        stubber.add_response("converse", converse_response())
        client.converse(modelId=MODEL_ID, messages=MESSAGES, toolConfig=TOOL_CONFIG)
        (span,) = capture.spans
        dumped = _dump(span)
        for secret in TOOL_SECRETS:
            assert secret not in dumped
        assert span.status.status_code == SpanStatusCode.OK
        return span

    def test_capture_content_off_drops_tool_definitions(self, capture, client, stubber):
        """No tool name, description or schema text is recorded anywhere."""
        span = self.converse_with_tools(
            capture, client, stubber, TraceConfig(capture_content=False)
        )
        assert "mlflow.chat.tools" not in span.attributes

    def test_redact_hook_sees_tool_definitions(self, capture, client, stubber):
        """The hook rewrites the tools attribute; what it returns is what is recorded."""
        kinds = []

        def redact(kind, value):
            kinds.append(kind)
            text = json.dumps(value)
            for secret in TOOL_SECRETS:
                text = text.replace(secret, "[x]")
            return json.loads(text)

        span = self.converse_with_tools(capture, client, stubber, TraceConfig(redact=redact))
        assert "tools" in kinds
        assert span.attributes["mlflow.chat.tools"][0]["function"]["name"] == "[x]"


class TestUnregisterInFlight:
    """unregister while a call is in flight: the call's span ends with its true outcome."""

    @pytest.mark.parametrize("target", ["client", "session"])
    def test_converse_in_flight(self, capture, target):
        """unregister between sending the request and the response: OK span with outputs."""
        session = make_session()
        bedrock_trace.register(session)
        client = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        with HttpStub(client) as http:
            http.add(converse_response("in flight"))

            def unregister_mid_call(**kwargs):
                bedrock_trace.unregister(client if target == "client" else session)

            client.meta.events.register("before-send.bedrock-runtime", unregister_mid_call)
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
        flush()
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK
        assert span.outputs["output"]["message"]["content"] == [{"text": "in flight"}]
        assert "bedrock_trace.incomplete" not in span.attributes

    def test_stream_in_flight_then_registered_again(self, capture):
        """unregister(client) mid-call, register again: one span per call, true outcomes."""
        session = make_session()
        client = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        bedrock_trace.register(client)
        with HttpStub(client) as http:
            http.add_stream(converse_stream_messages("streamed"))
            http.add(converse_response("after"))

            def unregister_once(**kwargs):
                client.meta.events.unregister("before-send.bedrock-runtime", unique_id="toggle")
                bedrock_trace.unregister(client)

            client.meta.events.register(
                "before-send.bedrock-runtime", unregister_once, unique_id="toggle"
            )
            events = list(client.converse_stream(modelId=MODEL_ID, messages=MESSAGES)["stream"])
            client.converse(modelId=MODEL_ID, messages=MESSAGES)  # not traced
            bedrock_trace.register(client)
            http.add(converse_response("again"))
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
        flush()
        first, second = capture.spans
        assert first.name == "BedrockRuntime.converse_stream"
        assert first.status.status_code == SpanStatusCode.OK
        assert first.attributes["bedrock_trace.stream_events"] == len(events)
        assert "bedrock_trace.incomplete" not in first.attributes
        assert second.outputs["output"]["message"]["content"] == [{"text": "again"}]

    def test_threads_toggling(self, capture):
        """8 threads calling while another toggles register/unregister(client): no false ERROR."""
        session = make_session()
        client = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        bedrock_trace.register(client)
        stop = threading.Event()
        errors: list[BaseException] = []

        def toggle():
            while not stop.is_set():
                bedrock_trace.unregister(client)
                bedrock_trace.register(client)

        def work():
            try:
                for _ in range(30):
                    client.converse(modelId=MODEL_ID, messages=MESSAGES)
            except BaseException as error:
                errors.append(error)

        with HttpStub(client, keep_requests=False) as http:
            for _ in range(8 * 30):
                http.add(converse_response("ok"))
            toggler = threading.Thread(target=toggle)
            workers = [threading.Thread(target=work) for _ in range(8)]
            toggler.start()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            stop.set()
            toggler.join()
        flush()
        assert errors == []
        assert capture.spans, "no call was traced at all"
        for span in capture.spans:
            assert span.status.status_code == SpanStatusCode.OK, span.attributes
            assert span.outputs["output"]["message"]["content"] == [{"text": "ok"}]


class TestUnregisterDefaultSession:
    """unregister() with no target is idempotent and never raises for a missing profile."""

    def test_no_default_session_and_a_bad_profile(self):
        """In a fresh process with AWS_PROFILE naming no profile: no error, no session made."""
        program = textwrap.dedent(
            """
            import boto3, bedrock_trace
            bedrock_trace.unregister()
            bedrock_trace.unregister()
            assert boto3.DEFAULT_SESSION is None, "unregister() created the default session"
            """
        )
        env = {**os.environ, "AWS_PROFILE": "no-such-profile-bedrock-trace"}
        done = subprocess.run(
            [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr


class TestPayloadCap:
    """What is recorded is within max_payload_chars (plus the truncation marker), always."""

    MARKER_ALLOWANCE = 200

    def test_embedding_of_floats_under_the_default_cap(self, capture, client, http):
        """A 96 x 1024-float embedding reply under the default 1,000,000 cap."""
        embedding = [[0.123456789012345 + i * 1e-9 for i in range(1024)] for _ in range(96)]
        http.add({"embeddings": embedding, "inputTextTokenCount": 3})
        client.invoke_model(modelId="cohere.embed-english-v3", body=b'{"texts": ["a"]}')
        (span,) = capture.spans
        limit = TraceConfig().max_payload_chars
        assert _recorded_chars(span.outputs) <= limit + self.MARKER_ALLOWANCE
        assert span.attributes["bedrock_trace.truncated"] == ["outputs"]

    @pytest.mark.parametrize(
        "char", ["\x01", '"', "\\", "é", "\u2028", "😀"], ids=lambda c: f"U+{ord(c):04X}"
    )
    def test_escaped_and_non_ascii_text(self, capture, client, stubber, char):
        """Text that JSON escapes (or that is not ASCII) is measured as recorded."""
        limit = 10_000
        bedrock_trace.register(client, config=TraceConfig(max_payload_chars=limit))
        stubber.add_response("converse", converse_response(char * 4_900))
        client.converse(
            modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": char * 4_900}]}]
        )
        (span,) = capture.spans
        for payload in (span.inputs, span.outputs):
            assert _recorded_chars(payload) <= limit + self.MARKER_ALLOWANCE
        full_inputs = {
            "modelId": MODEL_ID,
            "messages": [{"role": "user", "content": [{"text": char * 4_900}]}],
        }
        expected = ["inputs", "outputs"] if _recorded_chars(full_inputs) > limit else []
        assert span.attributes.get("bedrock_trace.truncated", []) == expected


class TestStreamedToolCalls:
    """OpenAI-style streamed tool calls are merged by index, arguments concatenated."""

    def test_gpt_oss_tool_call_fragments(self, capture, client, http):
        """Three fragments of one call, two calls interleaved: two calls, whole arguments."""

        def delta(*calls, finish=None):
            choice = {"index": 0, "delta": {"tool_calls": list(calls)}}
            if finish:
                choice["finish_reason"] = finish
            return chunk_event({"choices": [choice]})

        http.add_stream(
            [
                delta(
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ),
                delta({"index": 0, "function": {"arguments": '{"city": '}}),
                delta(
                    {
                        "index": 1,
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                    }
                ),
                delta({"index": 0, "function": {"arguments": '"Paris"}'}}, finish="tool_calls"),
            ]
        )
        body = {"messages": [{"role": "user", "content": "Weather?"}]}
        list(
            client.invoke_model_with_response_stream(modelId=GPT_OSS, body=json.dumps(body))["body"]
        )
        (span,) = capture.spans
        message = span.outputs["choices"][0]["message"]
        assert message["tool_calls"] == [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
            },
        ]
        chat = span.attributes["mlflow.chat.messages"]
        assert [call["function"]["name"] for call in chat[-1]["tool_calls"]] == [
            "get_weather",
            "get_time",
        ]


class Bail(BaseException):
    """A BaseException from a user's hook (what a stray SystemExit or a framework's signal is)."""


class TestReaperSurvives:
    """A BaseException on the reaper thread does not stop later spans from ending."""

    def test_base_exception_in_redact_on_the_reaper(self, capture, client, http):
        """The hook raises BaseException while a dropped stream ends; later streams still end."""
        raised = []

        def redact(kind, value):
            on_reaper = threading.current_thread().name == "bedrock-trace-reaper"
            if kind == "outputs" and on_reaper and not raised:
                raised.append(kind)
                raise Bail("from the hook")
            return value

        bedrock_trace.register(client, config=TraceConfig(redact=redact))
        with expect_internal_errors():
            for _ in range(3):
                http.add_stream(converse_stream_messages("dropped", pieces=4))
                for index, _event in enumerate(
                    client.converse_stream(modelId=MODEL_ID, messages=MESSAGES)["stream"]
                ):
                    if index == 1:
                        break
            assert bedrock_trace._reaper.reaper.flush(5.0), "the reaper stopped working"
        assert raised
        assert len(capture.spans) == 3
        assert capture.open_traces() == 0


class TestResumeAfterBreak:
    """A stream resumed after break: nothing after the break is recorded, no warnings."""

    @pytest.mark.parametrize("operation", ["converse_stream", "invoke_stream"])
    def test_resume(self, capture, client, http, caplog, operation):
        """break at the second event, read on to the end: the span holds the first two."""
        if operation == "converse_stream":
            http.add_stream(converse_stream_messages("x" * 600, pieces=600))
            response = client.converse_stream(modelId=MODEL_ID, messages=MESSAGES)
            stream = response["stream"]
        else:
            http.add_stream([chunk_event({"generation": "x"}) for _ in range(600)])
            response = client.invoke_model_with_response_stream(
                modelId="meta.llama3-8b-instruct-v1:0", body=b"{}"
            )
            stream = response["body"]
        caplog.set_level(logging.WARNING)
        for index, _event in enumerate(stream):
            if index == 1:
                break
        rest = list(stream)
        assert len(rest) > 500
        flush()
        (span,) = capture.spans
        assert len(span.events) == 2
        assert span.attributes["bedrock_trace.stream_events"] == 2
        assert span.attributes["bedrock_trace.incomplete"] is True
        assert not [r for r in caplog.records if "ended span" in r.getMessage()]


class TestLargeFileBody:
    """A valid JSON request body over the read limit, passed as a file: never a parse error."""

    def test_file_object_over_ten_mebibytes(self, capture, client, stubber):
        """Recorded within the cap and marked truncated; the caller's file is not consumed."""
        data = json.dumps({"prompt": "y" * (11 * 1024 * 1024), "max_gen_len": 5}).encode()
        body = io.BytesIO(data)
        stubber.add_response("invoke_model", invoke_model_response({"generation": "ok"}))
        client.invoke_model(modelId="meta.llama3-8b-instruct-v1:0", body=body)
        (span,) = capture.spans
        assert "bedrock_trace.body_error" not in span.attributes
        assert span.attributes["bedrock_trace.truncated"] == ["inputs"]
        assert _recorded_chars(span.inputs) <= TraceConfig().max_payload_chars + 200
        assert span.status.status_code == SpanStatusCode.OK


class TestBinaryInStreamEvents:
    """Base64 images inside invoke stream chunks are placeholders in span events too."""

    def test_base64_image_in_a_chunk(self, capture, client, http):
        """The event holds the placeholder, as the outputs do; never the base64 text."""
        encoded = base64.b64encode(PNG).decode()
        http.add_stream([chunk_event({"images": [encoded]}), chunk_event({"done": True})])
        list(client.invoke_model_with_response_stream(modelId="vendor.x-v1", body=b"{}")["body"])
        (span,) = capture.spans
        assert encoded not in _dump(span)
        assert "[binary image/png" in span.events[0].attributes["json"]


class TestOddTokenCounts:
    """A token count that is text but not a number is skipped; the span stays OK."""

    @pytest.mark.parametrize("count", ["²", "٣", "1" * 5000, "-1", " 7"])
    def test_body_count(self, capture, client, http, count):
        """Llama body counts: the span is OK with its outputs, no usage from the odd count."""
        http.add({"generation": "hi", "prompt_token_count": count, "generation_token_count": 1})
        client.invoke_model(modelId="meta.llama3-8b-instruct-v1:0", body=b'{"prompt": "hi"}')
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK
        assert span.outputs["generation"] == "hi"
        assert "mlflow.chat.tokenUsage" not in span.attributes

    def test_header_count(self, capture, client, http):
        """The token-count headers: '²' is skipped."""
        http.add(
            {"embedding": [0.1]},
            headers={
                "x-amzn-bedrock-input-token-count": "²",
                "x-amzn-bedrock-output-token-count": "0",
            },
        )
        client.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=b'{"inputText": "a"}')
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK
        assert "mlflow.chat.tokenUsage" not in span.attributes


class TestAnthropicCamelCaseUsage:
    """Anthropic usage spelled inputTokens / outputTokens is read, as MLflow reads it."""

    def test_invoke_model(self, capture, client, http):
        """camelCase counts give the same token usage as the snake_case ones."""
        http.add(
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "Hi"}],
                "usage": {"inputTokens": 7, "outputTokens": 2},
            }
        )
        client.invoke_model(modelId=CLAUDE, body=b'{"messages": []}')
        (span,) = capture.spans
        assert span.attributes["mlflow.chat.tokenUsage"] == {
            "input_tokens": 7,
            "output_tokens": 2,
            "total_tokens": 9,
        }


class TestStubberStillWorksAfterToggling:
    """Toggling registration leaves the client's other handlers (a Stubber) working."""

    def test_stubber(self, capture):
        """register/unregister around a Stubber: its responses still arrive."""
        client = make_session().client("bedrock-runtime")
        with Stubber(client) as stub:
            bedrock_trace.register(client)
            bedrock_trace.unregister(client)
            bedrock_trace.register(client)
            stub.add_response("converse", converse_response("stubbed"))
            response = client.converse(modelId=MODEL_ID, messages=MESSAGES)
        assert response["output"]["message"]["content"] == [{"text": "stubbed"}]
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK
