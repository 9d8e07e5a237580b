"""converse: what the span records, and that the caller sees exactly what it would untraced."""

from __future__ import annotations

import copy
import threading

import mlflow
import pytest
from botocore.stub import Stubber
from mlflow.entities import SpanStatusCode, SpanType

import bedrock_trace
from bedrock_trace.testing import converse_response

from .conftest import MODEL_ID, ONE_ATTEMPT, make_session

MESSAGES = [{"role": "user", "content": [{"text": "What is the weather in Paris?"}]}]
TOOL_CONFIG = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "inputSchema": {
                    "json": {"type": "object", "properties": {"city": {"type": "string"}}}
                },
            }
        },
        {"cachePoint": {"type": "default"}},
    ]
}
KWARGS = {
    "modelId": MODEL_ID,
    "messages": MESSAGES,
    "system": [{"text": "Be brief."}],
    "inferenceConfig": {"maxTokens": 256, "temperature": 0.2, "topP": 0.9},
    "toolConfig": TOOL_CONFIG,
}


class TestConverseSpan:
    """The span of a successful converse call."""

    def test_records_inputs_outputs_and_attributes(self, capture, client, stubber):
        """Name, type, inputs, outputs, model, provider, format, tools, usage, stop reason."""
        response = converse_response(
            "Let me check.",
            tool_uses=[{"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}],
            input_tokens=42,
            output_tokens=7,
            latency_ms=321,
        )
        stubber.add_response("converse", response)
        client.converse(**KWARGS)
        (span,) = capture.spans
        assert span.name == "BedrockRuntime.converse"
        assert span.span_type == SpanType.CHAT_MODEL
        assert span.status.status_code == SpanStatusCode.OK
        assert span.parent_id is None
        assert span.inputs == KWARGS
        assert span.outputs == response
        attrs = span.attributes
        assert attrs["mlflow.llm.model"] == MODEL_ID
        assert attrs["mlflow.llm.provider"] == "anthropic"
        assert attrs["mlflow.message.format"] == "bedrock"
        assert attrs["mlflow.chat.tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather for a city.",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ]
        assert attrs["mlflow.chat.tokenUsage"] == {
            "input_tokens": 42,
            "output_tokens": 7,
            "total_tokens": 49,
        }
        assert attrs["bedrock_trace.stop_reason"] == "tool_use"
        assert attrs["bedrock_trace.latency_ms"] == 321
        assert attrs["bedrock_trace.operation"] == "Converse"
        assert attrs["bedrock_trace.region"] == "us-east-1"

    def test_cache_tokens_are_counted_as_mlflow_does(self, capture, client, stubber):
        """input_tokens includes cache read and write tokens; total is input + output."""
        stubber.add_response(
            "converse",
            converse_response(
                input_tokens=10, output_tokens=5, cache_read_tokens=100, cache_write_tokens=20
            ),
        )
        client.converse(modelId=MODEL_ID, messages=MESSAGES)
        (span,) = capture.spans
        assert span.attributes["mlflow.chat.tokenUsage"] == {
            "input_tokens": 130,
            "output_tokens": 5,
            "total_tokens": 135,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
        }

    def test_span_duration_covers_the_call(self, capture, client, stubber):
        """The span starts before and ends after the call, with a positive duration."""
        stubber.add_response("converse", converse_response())
        client.converse(modelId=MODEL_ID, messages=MESSAGES)
        (span,) = capture.spans
        assert span.end_time_ns > span.start_time_ns

    @pytest.mark.parametrize(
        ("model_id", "provider"),
        [
            ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic"),
            ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic"),
            ("global.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic"),
            ("apac.amazon.nova-lite-v1:0", "amazon"),
            ("arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-8b-instruct-v1:0", "meta"),
            (
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.mistral.pixtral-large-2502-v1:0",
                "mistral",
            ),
            ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3", None),
        ],
        ids=[
            "plain",
            "us-profile",
            "global-profile",
            "apac-profile",
            "fm-arn",
            "profile-arn",
            "app-profile-arn",
        ],
    )
    def test_provider_from_any_model_id_form(self, capture, client, stubber, model_id, provider):
        """Provider from plain ids, geo profiles and ARNs; the model id is kept as given."""
        stubber.add_response("converse", converse_response())
        client.converse(modelId=model_id, messages=MESSAGES)
        (span,) = capture.spans
        assert span.attributes["mlflow.llm.model"] == model_id
        assert span.attributes.get("mlflow.llm.provider") == provider


class TestConverseCallerUnaffected:
    """Tracing does not change what the caller sends, gets or owns."""

    def test_response_identical_to_untraced_client(self, capture):
        """The traced and the untraced client return equal responses for the same stub."""
        session = make_session()
        untraced = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        bedrock_trace.register(session)
        traced = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        responses = []
        for client in (untraced, traced):
            with Stubber(client) as stub:
                stub.add_response("converse", converse_response("same"))
                responses.append(client.converse(**KWARGS))
        assert responses[0] == responses[1]
        assert len(capture.spans) == 1

    def test_request_objects_not_mutated(self, capture, client, stubber):
        """The caller's kwargs and nested objects are left exactly as they were."""
        kwargs = copy.deepcopy(KWARGS)
        kwargs["messages"][0]["content"].append(
            {"image": {"format": "png", "source": {"bytes": b"\x89PNG\r\n"}}}
        )
        before = copy.deepcopy(kwargs)
        stubber.add_response("converse", converse_response())
        client.converse(**kwargs)
        assert kwargs == before

    def test_later_mutation_does_not_change_the_record(self, capture, client, stubber):
        """An agent loop appending to its message list after the call does not rewrite history."""
        messages = copy.deepcopy(MESSAGES)
        stubber.add_response("converse", converse_response())
        client.converse(modelId=MODEL_ID, messages=messages)
        messages.append({"role": "assistant", "content": [{"text": "later"}]})
        messages[0]["content"][0]["text"] = "changed"
        (span,) = capture.spans
        assert span.inputs["messages"] == MESSAGES


class TestConverseBinary:
    """Binary content is recorded as a placeholder unless asked for."""

    def test_image_bytes_become_a_placeholder(self, capture, client, stubber):
        """An image block's bytes are replaced by media type, size and digest."""
        data = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
        image = {"image": {"format": "png", "source": {"bytes": data}}}
        stubber.add_response("converse", converse_response())
        client.converse(modelId=MODEL_ID, messages=[{"role": "user", "content": [image]}])
        (span,) = capture.spans
        recorded = span.inputs["messages"][0]["content"][0]["image"]["source"]["bytes"]
        assert recorded.startswith("[binary image/png, 264 bytes, sha256:")

    def test_redacted_reasoning_in_response_becomes_a_placeholder(self, capture, client, stubber):
        """reasoningContent.redactedContent (bytes) in a response is recorded as a placeholder."""
        response = converse_response("ok")
        response["output"]["message"]["content"].insert(
            0, {"reasoningContent": {"redactedContent": b"\x00\x01secret-ish"}}
        )
        stubber.add_response("converse", response)
        result = client.converse(modelId=MODEL_ID, messages=MESSAGES)
        (span,) = capture.spans
        block = span.outputs["output"]["message"]["content"][0]
        assert block["reasoningContent"]["redactedContent"].startswith("[binary")
        assert (
            result["output"]["message"]["content"][0]["reasoningContent"]["redactedContent"]
            == b"\x00\x01secret-ish"
        )


class TestConverseParents:
    """Spans nest under the caller's active MLflow span."""

    def test_nested_under_active_span(self, capture, client, stubber):
        """A call inside mlflow.start_span is that span's child, in the same trace."""
        stubber.add_response("converse", converse_response())
        with mlflow.start_span("outer") as outer:
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
        (trace,) = capture.traces
        names = {span.name: span for span in trace.data.spans}
        assert names["BedrockRuntime.converse"].parent_id == outer.span_id

    def test_threads_keep_their_own_parents(self, capture, session):
        """Concurrent calls under distinct parents each land under their own parent."""
        errors: list[BaseException] = []

        def work(index: int) -> None:
            try:
                client = session.client("bedrock-runtime", config=ONE_ATTEMPT)
                with Stubber(client) as stub:
                    for _ in range(5):
                        stub.add_response("converse", converse_response(f"r{index}"))
                    with mlflow.start_span(f"parent-{index}"):
                        for _ in range(5):
                            client.converse(modelId=MODEL_ID, messages=MESSAGES)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(capture.traces) == 6
        for trace in capture.traces:
            root = next(span for span in trace.data.spans if span.parent_id is None)
            index = root.name.split("-")[1]
            children = [span for span in trace.data.spans if span.parent_id == root.span_id]
            assert len(children) == 5
            assert all(
                child.outputs["output"]["message"]["content"][0]["text"] == f"r{index}"
                for child in children
            )


class TestTracingDisabled:
    """mlflow.tracing.disable() turns bedrock_trace off."""

    def test_no_spans_and_plain_botocore_objects(self, capture, client, stubber):
        """Disabled: no span, and invoke_model's body is botocore's own StreamingBody."""
        from botocore.response import StreamingBody

        from bedrock_trace.testing import invoke_model_response

        stubber.add_response("converse", converse_response())
        stubber.add_response("invoke_model", invoke_model_response({"x": 1}))
        mlflow.tracing.disable()
        try:
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
            response = client.invoke_model(modelId=MODEL_ID, body=b"{}")
        finally:
            mlflow.tracing.enable()
        assert type(response["body"]) is StreamingBody
        assert response["body"].read() == b'{"x": 1}'
        assert capture.spans == []
