"""invoke_model: decoded bodies, span types, usage sources, and an unchanged body for the caller."""

from __future__ import annotations

import io
import json

import pytest
from botocore.exceptions import BotoCoreError
from botocore.response import StreamingBody
from mlflow.entities import SpanStatusCode, SpanType

import bedrock_trace
from bedrock_trace.testing import HttpStub

from .conftest import ONE_ATTEMPT, make_session

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
CLAUDE_REQUEST = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 200,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
}
CLAUDE_RESPONSE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "content": [{"type": "text", "text": "Hello!"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 12, "output_tokens": 3},
}


class TestInvokeModelBody:
    """Request and response bodies are recorded decoded; the caller's body is intact."""

    def test_decoded_inputs_and_outputs(self, capture, client, http):
        """Both bodies appear as JSON objects, usage from the body, stop reason, latency."""
        http.add(CLAUDE_RESPONSE, headers={"x-amzn-bedrock-invocation-latency": "456"})
        response = client.invoke_model(modelId=CLAUDE, body=json.dumps(CLAUDE_REQUEST))
        assert json.loads(response["body"].read()) == CLAUDE_RESPONSE
        (span,) = capture.spans
        assert span.name == "BedrockRuntime.invoke_model"
        assert span.span_type == SpanType.CHAT_MODEL
        assert span.inputs == {"modelId": CLAUDE, "body": CLAUDE_REQUEST}
        assert span.outputs == CLAUDE_RESPONSE
        assert span.attributes["bedrock_trace.content_type"] == "application/json"
        attrs = span.attributes
        assert attrs["mlflow.chat.tokenUsage"] == {
            "input_tokens": 12,
            "output_tokens": 3,
            "total_tokens": 15,
        }
        assert attrs["bedrock_trace.usage_source"] == "body"
        assert attrs["bedrock_trace.stop_reason"] == "end_turn"
        assert attrs["bedrock_trace.latency_ms"] == 456
        assert attrs["bedrock_trace.request_id"] == "00000000-0000-4000-8000-000000000000"
        assert attrs["bedrock_trace.http_status"] == 200

    @pytest.mark.parametrize("how", ["read", "chunks", "lines", "readinto", "iterate"])
    def test_caller_reads_identical_bytes(self, capture, client, http, how):
        """Every StreamingBody reading style yields the exact bytes the server sent."""
        sent = (json.dumps(CLAUDE_RESPONSE, indent=2) + "\n").encode()
        http.add(sent)
        body = client.invoke_model(modelId=CLAUDE, body=json.dumps(CLAUDE_REQUEST))["body"]
        assert isinstance(body, StreamingBody)
        if how == "read":
            got = body.read()
        elif how == "chunks":
            got = b"".join(body.iter_chunks(7))
        elif how == "lines":
            got = b"".join(line + b"\n" for line in body.iter_lines())
        elif how == "readinto":
            buffer = bytearray(len(sent) + 10)
            got = bytes(buffer[: body.readinto(buffer)])
        else:
            got = b"".join(body)
        assert got == sent
        assert body.read() == b""

    def test_response_identical_to_untraced_client(self, capture):
        """Traced and untraced clients return equal metadata and equal body bytes."""
        session = make_session()
        untraced = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        bedrock_trace.register(session)
        traced = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        results = []
        for client in (untraced, traced):
            with HttpStub(client) as stub:
                stub.add(CLAUDE_RESPONSE)
                response = client.invoke_model(modelId=CLAUDE, body=json.dumps(CLAUDE_REQUEST))
                data = response.pop("body").read()
                response["ResponseMetadata"]["HTTPHeaders"].pop("date", None)
                results.append((response, data))
        assert results[0] == results[1]
        assert len(capture.spans) == 1

    def test_file_like_request_body_is_read_without_being_consumed(self, capture, client, http):
        """A seekable request body is recorded, and still sent whole from the caller's position."""
        payload = json.dumps(CLAUDE_REQUEST).encode()
        stream = io.BytesIO(b"PREFIX" + payload)
        stream.seek(6)
        seen_at_send = []

        def record(request, **kwargs):
            seen_at_send.append(request.body.tell())
            seen_at_send.append(request.body.read())

        client.meta.events.register("before-send.bedrock-runtime", record)
        http.add(CLAUDE_RESPONSE)
        client.invoke_model(modelId=CLAUDE, body=stream)
        (span,) = capture.spans
        assert span.inputs["body"] == CLAUDE_REQUEST
        assert seen_at_send == [6, payload]

    def test_truncated_response_raises_the_same_error_for_the_caller(self, capture):
        """A body shorter than its Content-Length fails at the caller's read, as untraced."""
        session = make_session()
        untraced = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        bedrock_trace.register(session)
        traced = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        seen = []
        for client in (untraced, traced):
            with HttpStub(client) as stub:
                stub.add(b'{"partial": tru', headers={"content-length": "100"})
                body = client.invoke_model(modelId=CLAUDE, body=json.dumps(CLAUDE_REQUEST))["body"]
                with pytest.raises(BotoCoreError) as raised:
                    body.read()
                seen.append((type(raised.value), str(raised.value)))
        assert seen[0] == seen[1]
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK
        assert seen[1][0].__name__ in span.attributes["bedrock_trace.body_error"]
        assert span.outputs == ""

    def test_truncated_body_fails_at_the_first_chunked_read(self, capture, client, http):
        """Chunked readers get botocore's full-read error at their first read (documented)."""
        http.add(b"0123456789", headers={"content-length": "20"})
        body = client.invoke_model(modelId=CLAUDE, body=b"{}")["body"]
        with pytest.raises(BotoCoreError):
            body.read(4)
        (span,) = capture.spans
        assert "IncompleteReadError" in span.attributes["bedrock_trace.body_error"]


class TestInvokeModelBadBodies:
    """Bodies that are not JSON still give a span, with the reason and bounded raw text."""

    def test_non_json_request_body(self, capture, client, http):
        """A request body that is not JSON is kept as text with the parse error noted."""
        http.add(CLAUDE_RESPONSE)
        client.invoke_model(modelId=CLAUDE, body=b"not json at all")
        (span,) = capture.spans
        assert span.inputs["body"] == "not json at all"
        assert span.attributes["bedrock_trace.body_error"].startswith("request body is not valid")

    def test_non_json_response_body_reaches_caller_unchanged(self, capture, client, http):
        """A text response body is recorded as text and handed over byte for byte."""
        http.add(b"plain text reply", headers={"content-type": "text/plain"})
        body = client.invoke_model(modelId=CLAUDE, body=json.dumps(CLAUDE_REQUEST))["body"]
        assert body.read() == b"plain text reply"
        (span,) = capture.spans
        assert span.outputs == "plain text reply"
        assert span.attributes["bedrock_trace.body_error"].startswith("response body is not")

    def test_binary_response_body_becomes_a_placeholder(self, capture, client, http):
        """A binary body (an image) is recorded as a placeholder and handed over unchanged."""
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(200, 256)) * 4
        http.add(png, headers={"content-type": "image/png"})
        body = client.invoke_model(modelId=CLAUDE, body=b"{}", accept="image/png")["body"]
        assert body.read() == png
        (span,) = capture.spans
        assert span.outputs.startswith(f"[binary application/octet-stream, {len(png)} bytes")

    def test_huge_non_json_body_is_bounded(self, client, http):
        """Raw text beyond max_raw_body_chars is cut with an explicit marker."""
        from bedrock_trace.testing import capture_traces

        bedrock_trace.register(client, config=bedrock_trace.TraceConfig(max_raw_body_chars=100))
        http.add(CLAUDE_RESPONSE)
        with capture_traces() as capture:
            client.invoke_model(modelId=CLAUDE, body=b"x" * 5000)
        (span,) = capture.spans
        assert span.inputs["body"] == "x" * 100 + "...[truncated 4900 of 5000 chars]"


MODEL_ROWS = [
    # (model id, request, response, headers, span type, usage, usage source)
    pytest.param(
        "meta.llama3-8b-instruct-v1:0",
        {"prompt": "Hi", "max_gen_len": 50},
        {
            "generation": "Hello",
            "prompt_token_count": 5,
            "generation_token_count": 2,
            "stop_reason": "stop",
        },
        {},
        SpanType.LLM,
        {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
        "body",
        id="llama-body",  # model-parameters-meta.html
    ),
    pytest.param(
        "amazon.titan-embed-text-v2:0",
        {"inputText": "Hi"},
        {"embedding": [0.1, 0.2], "inputTextTokenCount": 3},
        {},
        SpanType.EMBEDDING,
        {"input_tokens": 3, "output_tokens": 0, "total_tokens": 3},
        "body",
        id="titan-embed",  # model-parameters-titan-embed-text.html
    ),
    pytest.param(
        "cohere.embed-english-v3",
        {"texts": ["a", "b"], "input_type": "search_document"},
        {"embeddings": [[0.1], [0.2]], "id": "x", "response_type": "embeddings_floats"},
        {"x-amzn-bedrock-input-token-count": "4", "x-amzn-bedrock-output-token-count": "0"},
        SpanType.EMBEDDING,
        {"input_tokens": 4, "output_tokens": 0, "total_tokens": 4},
        "headers",
        id="cohere-embed-headers",  # model-parameters-embed.html
    ),
    pytest.param(
        "us.amazon.nova-lite-v1:0",
        {
            "schemaVersion": "messages-v1",
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        },
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}},
            "stopReason": "end_turn",
            "usage": {
                "inputTokens": 4,
                "outputTokens": 2,
                "totalTokens": 6,
                "cacheReadInputTokenCount": 10,
                "cacheWriteInputTokenCount": 0,
            },
        },
        {},
        SpanType.CHAT_MODEL,
        {
            "input_tokens": 14,
            "output_tokens": 2,
            "total_tokens": 16,
            "cache_read_input_tokens": 10,
            "cache_creation_input_tokens": 0,
        },
        "body",
        id="nova-cache",  # model-parameters-nova.html
    ),
    pytest.param(
        "mistral.mistral-7b-instruct-v0:2",
        {"prompt": "<s>[INST] Hi [/INST]", "max_tokens": 50},
        {"outputs": [{"text": "Hello", "stop_reason": "stop"}]},
        {"x-amzn-bedrock-input-token-count": "9", "x-amzn-bedrock-output-token-count": "2"},
        SpanType.LLM,
        {"input_tokens": 9, "output_tokens": 2, "total_tokens": 11},
        "headers",
        id="mistral-text-headers",  # model-parameters-mistral-text-completion.html
    ),
    pytest.param(
        "some-vendor.unknown-model-v1",
        {"input": "Hi"},
        {"result": "Hello"},
        {},
        SpanType.LLM,
        None,
        None,
        id="unknown-no-usage",
    ),
]


class TestInvokeModelFamilies:
    """Span type and usage per model family, headers as the fallback for usage."""

    @pytest.mark.parametrize(
        ("model_id", "request_body", "response_body", "headers", "span_type", "usage", "source"),
        MODEL_ROWS,
    )
    def test_family_row(
        self,
        capture,
        client,
        http,
        model_id,
        request_body,
        response_body,
        headers,
        span_type,
        usage,
        source,
    ):
        """Each family's body gives its span type and token usage; nothing is estimated."""
        http.add(response_body, headers=headers)
        client.invoke_model(modelId=model_id, body=json.dumps(request_body))
        (span,) = capture.spans
        assert span.span_type == span_type
        assert span.attributes.get("mlflow.chat.tokenUsage") == usage
        assert span.attributes.get("bedrock_trace.usage_source") == source
        assert span.inputs["body"] == request_body
        assert span.outputs == response_body
