"""Spans exported through MLflow's OTLP path (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) to a
loopback OTLP/HTTP receiver, plain and translated to the OpenTelemetry GenAI semantic
conventions (``MLFLOW_ENABLE_OTEL_GENAI_SEMCONV``)."""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import mlflow
import pytest
from botocore.exceptions import ClientError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from bedrock_trace import demo

from ..conftest import MODEL_ID
from .conftest import FULL_MLFLOW, OTLP_HTTP_EXPORTER, Bedrock

# MLflow imports its OTLP/HTTP exporter from this package (mlflow/tracing/utils/otlp.py).
pytestmark = pytest.mark.skipif(
    not (FULL_MLFLOW and OTLP_HTTP_EXPORTER),
    reason="needs full mlflow and opentelemetry-exporter-otlp-proto-http",
)

DEMO_RULES = demo.DEMO_SCENARIO["rules"]
BASIC_REPLY = DEMO_RULES[0]["reply"]
HAIKU_REPLY = DEMO_RULES[1]["reply"]
STREAM_EVENTS = [
    "messageStart",
    *["contentBlockDelta"] * HAIKU_REPLY["pieces"],
    "contentBlockStop",
    "messageStop",
    "metadata",
]
# Every OTLP setting that could send the export elsewhere or change its encoding.
_OTEL_ENV = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "MLFLOW_ENABLE_OTLP_EXPORTER",
    "MLFLOW_TRACE_ENABLE_OTLP_DUAL_EXPORT",
    "MLFLOW_ENABLE_OTEL_GENAI_SEMCONV",
)


# --- the receiver ---------------------------------------------------------------------------


@dataclass
class Received:
    """One export request as the receiver got it."""

    path: str
    content_type: str
    request: ExportTraceServiceRequest


@dataclass
class OtlpReceiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: accepts protobuf POSTs to ``/v1/traces``."""

    exports: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def traces_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}/v1/traces"

    def start(self) -> OtlpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                request = ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    receiver.exports.append(
                        Received(self.path, self.headers.get("Content-Type", ""), request)
                    )
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def spans(self) -> list[Span]:
        with self.lock:
            return [
                span
                for received in self.exports
                for resource_spans in received.request.resource_spans
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            ]

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[Span]:
        """The spans received, once there are at least ``count`` of them."""
        deadline = time.monotonic() + timeout
        while len(spans := self.spans()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(spans) >= count, f"expected {count} spans, got {[s.name for s in spans]}"
        return spans


def value_of(any_value: AnyValue) -> Any:
    """An OTLP attribute value as Python."""
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(item) for item in any_value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: value_of(item.value) for item in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def attributes_of(item: Any) -> dict[str, Any]:
    return {attribute.key: value_of(attribute.value) for attribute in item.attributes}


def decoded(attributes: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The attributes under ``prefix``, JSON-decoded: MLflow's span API writes every value it
    is given as JSON text, so OTLP carries ``"Converse"`` (with quotes) and ``200`` as strings."""
    return {key: json.loads(value) for key, value in attributes.items() if key.startswith(prefix)}


def export_converse_and_stream(bedrock: Bedrock, receiver: OtlpReceiver) -> tuple[Span, Span]:
    """Run a converse and a converse_stream call; the two spans the receiver got."""
    demo.basic(bedrock.client, MODEL_ID, io.StringIO())
    demo.streaming(bedrock.client, MODEL_ID, io.StringIO())
    mlflow.tracing.reset()  # flushes MLflow's OTLP span processor
    converse, stream = receiver.wait_for_spans(2)
    return converse, stream


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def otlp(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    """MLflow exporting over OTLP/HTTP protobuf to a loopback receiver (and nowhere else)."""
    receiver = OtlpReceiver().start()
    for name in _OTEL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.traces_url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    mlflow.tracing.reset()  # the tracer provider is rebuilt from these settings
    try:
        yield receiver
    finally:
        # Flush and drop the OTLP processor; monkeypatch then restores the environment.
        mlflow.tracing.reset()
        receiver.stop()


@pytest.fixture
def semconv(otlp: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> OtlpReceiver:
    """The OTLP export, translated to the OpenTelemetry GenAI semantic conventions."""
    monkeypatch.setenv("MLFLOW_ENABLE_OTEL_GENAI_SEMCONV", "true")
    return otlp


# --- tests ----------------------------------------------------------------------------------


class TestOtlpExport:
    """MLflow's plain OTLP export of our spans."""

    def test_converse_span_arrives_with_mlflow_and_bedrock_trace_attributes(
        self, otlp: OtlpReceiver, bedrock: Bedrock
    ):
        """The converse span reaches the receiver as protobuf with the MLflow keys and ours."""
        converse, _ = export_converse_and_stream(bedrock, otlp)
        assert {(r.path, r.content_type) for r in otlp.exports} == {
            ("/v1/traces", "application/x-protobuf")
        }
        assert converse.name == "BedrockRuntime.converse"
        assert converse.status.code == Status.STATUS_CODE_OK
        assert converse.parent_span_id == b""
        attributes = attributes_of(converse)
        ours = decoded(attributes, "bedrock_trace.")
        assert ours["bedrock_trace.operation"] == "Converse"
        assert ours["bedrock_trace.http_status"] == 200
        assert ours["bedrock_trace.request_id"] == bedrock.standin.requests[0].request_id
        assert ours["bedrock_trace.stop_reason"] == "end_turn"
        mlflow_keys = decoded(attributes, "mlflow.")
        assert mlflow_keys["mlflow.spanType"] == "CHAT_MODEL"
        assert mlflow_keys["mlflow.llm.model"] == MODEL_ID
        assert mlflow_keys["mlflow.llm.provider"] == "anthropic"
        assert mlflow_keys["mlflow.message.format"] == "bedrock"
        assert mlflow_keys["mlflow.chat.tokenUsage"] == {
            "input_tokens": BASIC_REPLY["input_tokens"],
            "output_tokens": BASIC_REPLY["output_tokens"],
            "total_tokens": BASIC_REPLY["input_tokens"] + BASIC_REPLY["output_tokens"],
        }
        assert mlflow_keys["mlflow.spanInputs"]["modelId"] == MODEL_ID
        assert mlflow_keys["mlflow.spanOutputs"]["output"]["message"]["content"] == [
            {"text": BASIC_REPLY["text"]}
        ]

    def test_stream_span_arrives_with_its_stream_events(self, otlp: OtlpReceiver, bedrock):
        """The converse_stream span carries one span event per stream event, with its JSON."""
        _, stream = export_converse_and_stream(bedrock, otlp)
        assert stream.name == "BedrockRuntime.converse_stream"
        assert stream.status.code == Status.STATUS_CODE_OK
        assert [event.name for event in stream.events] == STREAM_EVENTS
        payloads = [json.loads(attributes_of(event)["json"]) for event in stream.events]
        deltas = [payload["delta"]["text"] for payload in payloads if "delta" in payload]
        assert "".join(deltas) == HAIKU_REPLY["text"]
        ours = decoded(attributes_of(stream), "bedrock_trace.")
        assert ours["bedrock_trace.stream_events"] == len(STREAM_EVENTS)
        assert ours["bedrock_trace.operation"] == "ConverseStream"


class TestOtlpGenAiSemconv:
    """The same export translated by MLflow to the OpenTelemetry GenAI semantic conventions."""

    def test_converse_span_carries_genai_attributes(self, semconv: OtlpReceiver, bedrock):
        """The converse span becomes a CLIENT ``chat <model>`` span with the GenAI request,
        usage and message attributes, and keeps our own keys."""
        converse, _ = export_converse_and_stream(bedrock, semconv)
        assert converse.name == f"chat {MODEL_ID}"
        assert converse.kind == Span.SPAN_KIND_CLIENT
        attributes = attributes_of(converse)
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == MODEL_ID
        assert attributes["gen_ai.provider.name"] == "anthropic"
        assert attributes["gen_ai.usage.input_tokens"] == BASIC_REPLY["input_tokens"]
        assert attributes["gen_ai.usage.output_tokens"] == BASIC_REPLY["output_tokens"]
        assert attributes["gen_ai.request.max_tokens"] == 200
        assert attributes["gen_ai.request.temperature"] == 0.2
        assert json.loads(attributes["gen_ai.input.messages"]) == [
            {
                "role": "user",
                "parts": [{"type": "text", "content": "What is MLflow Tracing, in one line?"}],
            }
        ]
        assert json.loads(attributes["gen_ai.output.messages"]) == [
            {"role": "assistant", "parts": [{"type": "text", "content": BASIC_REPLY["text"]}]}
        ]
        # MLflow's keys are replaced by the GenAI ones; ours stay.
        assert not [key for key in attributes if key.startswith("mlflow.")]
        ours = decoded(attributes, "bedrock_trace.")
        assert ours["bedrock_trace.request_id"] == bedrock.standin.requests[0].request_id

    def test_stream_span_carries_genai_attributes_and_events(self, semconv: OtlpReceiver, bedrock):
        """The converse_stream span gets the same GenAI attributes from its rebuilt response,
        and keeps its stream events."""
        _, stream = export_converse_and_stream(bedrock, semconv)
        assert stream.name == f"chat {MODEL_ID}"
        assert stream.kind == Span.SPAN_KIND_CLIENT
        attributes = attributes_of(stream)
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == MODEL_ID
        assert attributes["gen_ai.provider.name"] == "anthropic"
        assert attributes["gen_ai.usage.input_tokens"] == HAIKU_REPLY["input_tokens"]
        assert attributes["gen_ai.usage.output_tokens"] == HAIKU_REPLY["output_tokens"]
        assert json.loads(attributes["gen_ai.output.messages"]) == [
            {"role": "assistant", "parts": [{"type": "text", "content": HAIKU_REPLY["text"]}]}
        ]
        assert [event.name for event in stream.events] == STREAM_EVENTS

    def test_agent_spans_map_to_agent_tool_and_chat_operations(self, semconv, bedrock):
        """In the agent trace our converse spans carry the tool definitions and the tool call,
        next to MLflow's invoke_agent and execute_tool spans."""
        demo.agent(bedrock.client, MODEL_ID, io.StringIO())
        mlflow.tracing.reset()
        spans = semconv.wait_for_spans(4)
        by_operation: dict[str, list[dict[str, Any]]] = {}
        for span in spans:
            attributes = attributes_of(span)
            by_operation.setdefault(attributes["gen_ai.operation.name"], []).append(attributes)
        assert sorted((op, len(found)) for op, found in by_operation.items()) == [
            ("chat", 2),
            ("execute_tool", 1),
            ("invoke_agent", 1),
        ]
        first, second = by_operation["chat"]
        for chat in (first, second):
            (tool,) = json.loads(chat["gen_ai.tool.definitions"])
            assert tool["name"] == "get_weather"
            assert tool["parameters"]["required"] == ["city"]
        (call,) = json.loads(first["gen_ai.output.messages"])[0]["parts"]
        assert call["type"] == "tool_call"
        assert call["name"] == "get_weather"
        assert call["arguments"] == {"city": "Paris"}
        roles = [message["role"] for message in json.loads(second["gen_ai.input.messages"])]
        assert roles == ["user", "assistant", "tool"]

    def test_failed_call_exports_an_error_span(self, semconv: OtlpReceiver, bedrock):
        """A throttled call is an ERROR span with the exception event and our error code, and
        no usage."""
        bedrock.standin.reset({"rules": [{"operation": "converse", "throttle": 5}]})
        with pytest.raises(ClientError):
            demo.basic(bedrock.client, MODEL_ID, io.StringIO())
        mlflow.tracing.reset()
        (span,) = semconv.wait_for_spans(1)
        assert span.status.code == Status.STATUS_CODE_ERROR
        (event,) = span.events
        assert event.name == "exception"
        assert attributes_of(event)["exception.type"] == "ThrottlingException"
        attributes = attributes_of(span)
        assert attributes["gen_ai.request.model"] == MODEL_ID
        assert "gen_ai.usage.input_tokens" not in attributes
        ours = decoded(attributes, "bedrock_trace.")
        assert ours["bedrock_trace.error_code"] == "ThrottlingException"
        assert ours["bedrock_trace.http_status"] == 429
