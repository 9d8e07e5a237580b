"""Content controls: metadata-only capture, the redaction hook, the payload size cap, env vars."""

from __future__ import annotations

import json
import re

import pytest

import bedrock_trace
from bedrock_trace import TraceConfig
from bedrock_trace.testing import (
    chunk_event,
    converse_response,
    converse_stream_messages,
    expect_internal_errors,
)

from .conftest import MODEL_ID

SECRET_PROMPT = "My card number is 4111-1111-1111-1111, email jane@example.com"
REPLY = "I will not repeat jane@example.com"
MESSAGES = [{"role": "user", "content": [{"text": SECRET_PROMPT}]}]
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def _dump(span) -> str:
    return json.dumps(span.to_dict())


class TestCaptureContentOff:
    """capture_content=False records metadata, never prompt or completion text."""

    def test_converse(self, capture, client, stubber):
        """Model, parameters, usage, stop reason stay; the texts do not."""
        bedrock_trace.register(client, config=TraceConfig(capture_content=False))
        stubber.add_response("converse", converse_response(REPLY, input_tokens=9))
        client.converse(
            modelId=MODEL_ID,
            messages=MESSAGES,
            system=[{"text": "be nice"}],
            inferenceConfig={"maxTokens": 64, "temperature": 0.1},
        )
        (span,) = capture.spans
        assert span.inputs == {
            "modelId": MODEL_ID,
            "messages": [{"role": "user"}],
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.1},
        }
        assert span.outputs["stopReason"] == "end_turn"
        assert span.outputs["usage"]["inputTokens"] == 9
        assert span.attributes["mlflow.chat.tokenUsage"]["input_tokens"] == 9
        dumped = _dump(span)
        assert "4111" not in dumped
        assert "jane@example.com" not in dumped
        assert "be nice" not in dumped

    def test_converse_stream_events(self, capture, client, http):
        """Stream span events keep their names and usage, not their text."""
        bedrock_trace.register(client, config=TraceConfig(capture_content=False))
        http.add_stream(converse_stream_messages(REPLY))
        list(client.converse_stream(modelId=MODEL_ID, messages=MESSAGES)["stream"])
        (span,) = capture.spans
        assert span.events[0].name == "messageStart"
        assert "jane@example.com" not in _dump(span)
        assert span.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 15

    def test_invoke_model_has_no_chat_messages(self, capture, client, http):
        """invoke_model: no body text and no mlflow.chat.messages."""
        bedrock_trace.register(client, config=TraceConfig(capture_content=False))
        http.add(
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": REPLY}],
                "usage": {"input_tokens": 5, "output_tokens": 2},
            }
        )
        body = {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": SECRET_PROMPT}],
        }
        client.invoke_model(modelId=CLAUDE, body=json.dumps(body))
        (span,) = capture.spans
        assert "mlflow.chat.messages" not in span.attributes
        assert span.inputs["body"]["max_tokens"] == 10
        assert "jane@example.com" not in _dump(span)
        assert span.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 7


def scrub(kind, value):
    """A redaction hook: mask e-mail addresses and card numbers anywhere in the payload."""
    text = json.dumps(value)
    text = re.sub(r"[\w.]+@[\w.]+", "[email]", text)
    text = re.sub(r"\d{4}-\d{4}-\d{4}-\d{4}", "[card]", text)
    return json.loads(text)


class TestRedaction:
    """The redaction hook rewrites every payload before it is recorded."""

    def test_inputs_outputs_and_events_redacted(self, capture, client, http):
        """Inputs, outputs, stream events and chat messages all pass through the hook."""
        bedrock_trace.register(client, config=TraceConfig(redact=scrub))
        http.add(converse_response(REPLY))
        client.converse(modelId=MODEL_ID, messages=MESSAGES)
        http.add_stream(converse_stream_messages(REPLY))
        list(client.converse_stream(modelId=MODEL_ID, messages=MESSAGES)["stream"])
        http.add_stream(
            [
                chunk_event(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": REPLY},
                    }
                )
            ]
        )
        list(
            client.invoke_model_with_response_stream(
                modelId=CLAUDE,
                body=json.dumps({"messages": [{"role": "user", "content": SECRET_PROMPT}]}),
            )["body"]
        )
        converse, stream, invoke = capture.spans
        assert converse.inputs["messages"][0]["content"][0]["text"] == (
            "My card number is [card], email [email]"
        )
        assert converse.outputs["output"]["message"]["content"][0]["text"] == (
            "I will not repeat [email]"
        )
        for span in (converse, stream, invoke):
            dumped = _dump(span)
            assert "jane@example.com" not in dumped
            assert "4111-1111" not in dumped
        assert invoke.attributes["mlflow.chat.messages"][0]["content"] == (
            "My card number is [card], email [email]"
        )

    def test_failing_hook_withholds_content(self, capture, client, stubber):
        """A hook that raises: the payload is withheld, the call unaffected, the error logged."""

        def broken(kind, value):
            raise RuntimeError("redactor bug")

        bedrock_trace.register(client, config=TraceConfig(redact=broken))
        expected = converse_response(REPLY)
        stubber.add_response("converse", expected)
        with expect_internal_errors() as errors:
            assert client.converse(modelId=MODEL_ID, messages=MESSAGES) == expected
        (span,) = capture.spans
        assert span.inputs == "[redaction failed: content withheld]"
        assert span.outputs == "[redaction failed: content withheld]"
        assert "jane@example.com" not in _dump(span)
        assert {where for where, _ in errors} == {"redact hook"}


class TestPayloadCap:
    """max_payload_chars cuts big payloads with an explicit marker."""

    def test_large_prompt_is_truncated_with_marker(self, capture, client, stubber):
        """A prompt over the cap: a preview of the cap's length and the original size."""
        bedrock_trace.register(client, config=TraceConfig(max_payload_chars=500))
        stubber.add_response("converse", converse_response("ok"))
        big = [{"role": "user", "content": [{"text": "x" * 5000}]}]
        client.converse(modelId=MODEL_ID, messages=big)
        (span,) = capture.spans
        marker = span.inputs["bedrock_trace.truncated"]
        preview = span.inputs["preview"]
        assert marker["kept_chars"] == len(preview)
        assert marker["original_chars"] > 5000
        # The preview as recorded (a JSON string: quotes, escaped quotes) fits the cap.
        assert 450 < len(json.dumps(preview)) <= 500
        assert span.attributes["bedrock_trace.truncated"] == ["inputs"]
        assert span.outputs["output"]["message"]["content"] == [{"text": "ok"}]

    def test_small_payloads_untouched(self, capture, client, stubber):
        """Payloads under the cap are recorded as they are."""
        stubber.add_response("converse", converse_response("ok"))
        client.converse(modelId=MODEL_ID, messages=MESSAGES)
        (span,) = capture.spans
        assert span.inputs["messages"] == MESSAGES
        assert "bedrock_trace.truncated" not in span.attributes


class TestEnvironment:
    """Deployments that cannot change code configure through environment variables."""

    def test_from_env_reads_every_variable(self):
        """Each BEDROCK_TRACE_* variable maps onto its field."""
        config = TraceConfig.from_env(
            {
                "BEDROCK_TRACE_CAPTURE_CONTENT": "false",
                "BEDROCK_TRACE_INCLUDE_BINARY": "yes",
                "BEDROCK_TRACE_MAX_PAYLOAD_CHARS": "1234",
                "BEDROCK_TRACE_MAX_RAW_BODY_CHARS": "99",
                "BEDROCK_TRACE_MAX_STREAM_EVENTS": "7",
                "BEDROCK_TRACE_REDACT": "tests.test_content:scrub",
            }
        )
        assert config == TraceConfig(
            capture_content=False,
            include_binary=True,
            max_payload_chars=1234,
            max_raw_body_chars=99,
            max_stream_events=7,
            redact=scrub,
        )

    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [
            ("BEDROCK_TRACE_CAPTURE_CONTENT", "maybe", "true or false"),
            ("BEDROCK_TRACE_MAX_PAYLOAD_CHARS", "lots", "integer"),
            ("BEDROCK_TRACE_MAX_PAYLOAD_CHARS", "0", ">= 1"),
            ("BEDROCK_TRACE_REDACT", "no_colon", "package.module:function"),
            ("BEDROCK_TRACE_REDACT", "json:not_there", "not a callable"),
        ],
    )
    def test_bad_values_are_clear_errors(self, name, value, message):
        """A value that cannot mean anything is a ValueError naming the variable's rule."""
        with pytest.raises(ValueError, match=message):
            TraceConfig.from_env({name: value})

    def test_register_without_config_uses_the_environment(self, capture, session, monkeypatch):
        """register(target) with no config reads BEDROCK_TRACE_* at that moment."""
        from botocore.stub import Stubber

        from .conftest import make_session

        monkeypatch.setenv("BEDROCK_TRACE_CAPTURE_CONTENT", "0")
        quiet = make_session()
        bedrock_trace.register(quiet)
        client = quiet.client("bedrock-runtime")
        with Stubber(client) as stub:
            stub.add_response("converse", converse_response(REPLY))
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
        (span,) = capture.spans
        assert "jane@example.com" not in _dump(span)
