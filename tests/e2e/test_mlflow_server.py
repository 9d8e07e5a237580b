"""Spans as a real MLflow tracking server stores them: written by a traced boto3 client talking
to the Bedrock stand-in, read back over REST with ``MlflowClient``."""

from __future__ import annotations

import io
import json
import re
from typing import TYPE_CHECKING, Any

import mlflow
import pytest
from botocore.exceptions import ClientError
from mlflow.entities import Trace

from bedrock_trace import demo

from ..conftest import ACCESS_KEY, MODEL_ID, SECRET_KEY, SESSION_TOKEN
from .conftest import FULL_MLFLOW, Bedrock, MlflowServer, flush_traces

if TYPE_CHECKING:
    from mlflow import MlflowClient  # full mlflow only

pytestmark = pytest.mark.skipif(
    not FULL_MLFLOW, reason="the MLflow tracking server needs full mlflow (pip install mlflow)"
)

DEMO_RULES = demo.DEMO_SCENARIO["rules"]
BASIC_REPLY = DEMO_RULES[0]["reply"]
HAIKU_REPLY = DEMO_RULES[1]["reply"]
EXPECTED_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": demo.WEATHER_TOOL["tools"][0]["toolSpec"]["inputSchema"]["json"],
        },
    }
]


@pytest.fixture(scope="module")
def store(mlflow_server: MlflowServer, mlflow_experiment: Any) -> MlflowClient:
    """A client of the tracking server: everything the tests check is read back from it."""
    return mlflow.MlflowClient(tracking_uri=mlflow_server.url)


def stored(store: MlflowClient) -> Trace:
    """The last trace this process finished, as the server has it."""
    trace_id = mlflow.get_last_active_trace_id()
    assert trace_id, "no trace was finished"
    flush_traces()
    trace = store.get_trace(trace_id)
    assert trace is not None, f"the server does not have trace {trace_id}"
    return trace


def spans_of(trace: Trace) -> list[Any]:
    return sorted(trace.data.spans, key=lambda span: span.start_time_ns)


def only_span(trace: Trace) -> Any:
    (span,) = trace.data.spans
    return span


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def without_metadata(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "ResponseMetadata"}


class TestConverseOnServer:
    """A converse call, stored by the server."""

    def test_basic_scenario_is_stored_as_one_chat_model_span(self, store, bedrock: Bedrock):
        """The tutorial's basic call is one OK CHAT_MODEL span with the MLflow and
        bedrock_trace attributes intact."""
        demo.basic(bedrock.client, MODEL_ID, io.StringIO())
        trace = stored(store)
        span = only_span(trace)
        assert trace.info.state.value == "OK"
        assert span.name == "BedrockRuntime.converse"
        assert span.span_type == "CHAT_MODEL"
        assert span.parent_id is None
        assert span.status.status_code.value == "OK"
        assert span.events == []
        attributes = span.attributes
        assert attributes["mlflow.llm.model"] == MODEL_ID
        assert attributes["mlflow.llm.provider"] == "anthropic"
        assert attributes["mlflow.message.format"] == "bedrock"
        assert attributes["mlflow.chat.tokenUsage"] == usage(
            BASIC_REPLY["input_tokens"], BASIC_REPLY["output_tokens"]
        )
        assert attributes["bedrock_trace.operation"] == "Converse"
        assert attributes["bedrock_trace.region"] == "us-east-1"
        assert attributes["bedrock_trace.request_id"] == bedrock.standin.requests[-1].request_id
        assert attributes["bedrock_trace.http_status"] == 200
        assert attributes["bedrock_trace.retry_attempts"] == 0
        assert attributes["bedrock_trace.stop_reason"] == "end_turn"
        assert "mlflow.chat.tools" not in attributes
        assert span.outputs["output"]["message"]["content"] == [{"text": BASIC_REPLY["text"]}]
        assert trace.info.token_usage == attributes["mlflow.chat.tokenUsage"]

    def test_inputs_and_outputs_round_trip_through_the_server(self, store, bedrock: Bedrock):
        """The stored inputs are the call's keyword arguments and the stored outputs are the
        response without ResponseMetadata."""
        kwargs = {
            "modelId": MODEL_ID,
            "system": [{"text": "Answer briefly."}],
            "messages": [
                {"role": "user", "content": [{"text": "Name a colour."}]},
                {"role": "assistant", "content": [{"text": "Blue."}]},
                {"role": "user", "content": [{"text": "Another one, with ünïcödé?"}]},
            ],
            "inferenceConfig": {
                "maxTokens": 64,
                "temperature": 0.5,
                "topP": 0.9,
                "stopSequences": ["\n\n"],
            },
        }
        response = bedrock.client.converse(**kwargs)
        span = only_span(stored(store))
        assert span.inputs == kwargs
        assert span.outputs == without_metadata(response)

    @pytest.mark.parametrize(
        "model_id",
        ["us.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0"],
    )
    def test_server_computes_the_cost_of_a_priced_model(self, store, bedrock: Bedrock, model_id):
        """For a Bedrock model MLflow has prices for, the server adds ``mlflow.llm.cost`` to
        the span (from our model, provider and usage) and to the trace."""
        demo.basic(bedrock.client, model_id, io.StringIO())
        trace = stored(store)
        span = only_span(trace)
        cost = span.attributes.get("mlflow.llm.cost")
        assert cost, f"no cost for {model_id}: {sorted(span.attributes)}"
        assert cost["input_cost"] > 0
        assert cost["output_cost"] > 0
        assert cost["total_cost"] == pytest.approx(cost["input_cost"] + cost["output_cost"])
        # Claude 3.5 Haiku: output tokens cost five times input tokens.
        per_input_token = cost["input_cost"] / BASIC_REPLY["input_tokens"]
        per_output_token = cost["output_cost"] / BASIC_REPLY["output_tokens"]
        assert per_output_token == pytest.approx(5 * per_input_token)
        assert trace.info.cost == pytest.approx(cost)


class TestConverseStreamOnServer:
    """A converse_stream call, stored by the server."""

    def test_streaming_scenario_stores_one_event_per_stream_event(self, store, bedrock: Bedrock):
        """The streamed span keeps every stream event, in order, with its JSON payload, and
        the rebuilt response and usage."""
        text = demo.streaming(bedrock.client, MODEL_ID, io.StringIO())
        trace = stored(store)
        span = only_span(trace)
        assert trace.info.state.value == "OK"
        assert span.name == "BedrockRuntime.converse_stream"
        assert span.span_type == "CHAT_MODEL"
        assert span.status.status_code.value == "OK"
        names = [event.name for event in span.events]
        assert names == [
            "messageStart",
            *["contentBlockDelta"] * HAIKU_REPLY["pieces"],
            "contentBlockStop",
            "messageStop",
            "metadata",
        ]
        payloads = [json.loads(event.attributes["json"]) for event in span.events]
        deltas = [p["delta"]["text"] for p in payloads if "delta" in p]
        assert "".join(deltas) == text == HAIKU_REPLY["text"]
        assert payloads[-1]["usage"]["outputTokens"] == HAIKU_REPLY["output_tokens"]
        attributes = span.attributes
        assert attributes["bedrock_trace.stream_events"] == len(names)
        assert attributes["bedrock_trace.operation"] == "ConverseStream"
        assert attributes["bedrock_trace.http_status"] == 200
        assert attributes["bedrock_trace.request_id"] == bedrock.standin.requests[-1].request_id
        assert attributes["bedrock_trace.time_to_first_token_ms"] >= 0
        assert "bedrock_trace.incomplete" not in attributes
        assert attributes["mlflow.message.format"] == "bedrock"
        assert attributes["mlflow.llm.model"] == MODEL_ID
        assert attributes["mlflow.chat.tokenUsage"] == usage(
            HAIKU_REPLY["input_tokens"], HAIKU_REPLY["output_tokens"]
        )
        assert span.outputs["output"]["message"]["content"] == [{"text": HAIKU_REPLY["text"]}]
        assert span.outputs["stopReason"] == "end_turn"
        assert span.inputs["messages"][0]["content"][0]["text"] == "Write a haiku about tracing."
        assert span.attributes.get("mlflow.llm.cost")

    def test_search_finds_stream_spans_by_name(self, store, bedrock: Bedrock, mlflow_experiment):
        """A server-side search by span name finds the stream's trace."""
        demo.streaming(bedrock.client, MODEL_ID, io.StringIO())
        trace_id = stored(store).info.trace_id
        found = store.search_traces(
            locations=[mlflow_experiment.experiment_id],
            filter_string="span.name = 'BedrockRuntime.converse_stream'",
        )
        assert trace_id in {trace.info.trace_id for trace in found}


class TestAgentOnServer:
    """The tool-calling agent: our spans under the user's own ``@mlflow.trace`` spans."""

    def test_agent_trace_nests_converse_and_tool_spans_under_the_agent(
        self, store, bedrock: Bedrock
    ):
        """One trace: an AGENT root with converse, TOOL and converse children, in order."""
        answer = demo.agent(bedrock.client, MODEL_ID, io.StringIO())
        trace = stored(store)
        root, first, tool, second = spans_of(trace)
        assert trace.info.state.value == "OK"
        assert [(s.name, s.span_type) for s in (root, first, tool, second)] == [
            ("weather_agent", "AGENT"),
            ("BedrockRuntime.converse", "CHAT_MODEL"),
            ("get_weather", "TOOL"),
            ("BedrockRuntime.converse", "CHAT_MODEL"),
        ]
        assert root.parent_id is None
        assert {first.parent_id, tool.parent_id, second.parent_id} == {root.span_id}
        assert all(s.status.status_code.value == "OK" for s in (root, first, tool, second))
        for span in (first, second):
            assert span.attributes["mlflow.chat.tools"] == EXPECTED_TOOLS
            assert span.inputs["toolConfig"] == demo.WEATHER_TOOL
        assert first.attributes["bedrock_trace.stop_reason"] == "tool_use"
        (tool_use,) = first.outputs["output"]["message"]["content"]
        assert tool_use["toolUse"]["name"] == "get_weather"
        assert tool.inputs == tool_use["toolUse"]["input"] == {"city": "Paris"}
        assert second.attributes["bedrock_trace.stop_reason"] == "end_turn"
        assert second.inputs["messages"][-1]["content"][0]["toolResult"]["content"] == [
            {"text": tool.outputs}
        ]
        assert root.outputs == answer
        first_usage = first.attributes["mlflow.chat.tokenUsage"]
        second_usage = second.attributes["mlflow.chat.tokenUsage"]
        assert trace.info.token_usage == {
            key: first_usage[key] + second_usage[key] for key in first_usage
        }


@pytest.mark.parametrize(
    ("rule", "code", "status"),
    [
        ({"operation": "converse", "throttle": 5}, "ThrottlingException", 429),
        ({"operation": "converse", "error": "ValidationException"}, "ValidationException", 400),
    ],
    ids=["throttled", "validation"],
)
class TestFailedCallOnServer:
    """A converse call that fails with an AWS error, stored by the server."""

    def _fail_call(self, bedrock: Bedrock, rule: dict[str, Any]) -> ClientError:
        bedrock.standin.reset({"rules": [rule]})
        with pytest.raises(ClientError) as raised:
            demo.basic(bedrock.client, MODEL_ID, io.StringIO())
        return raised.value

    def test_failed_call_is_stored_as_an_error_trace(self, store, bedrock, rule, code, status):
        """The trace and span are ERROR, with the exception event, the AWS error code and the
        HTTP status, and no usage or cost."""
        error = self._fail_call(bedrock, rule)
        assert error.response["Error"]["Code"] == code
        trace = stored(store)
        span = only_span(trace)
        assert trace.info.state.value == "ERROR"
        assert span.name == "BedrockRuntime.converse"
        assert span.status.status_code.value == "ERROR"
        (event,) = span.events
        assert event.name == "exception"
        assert event.attributes["exception.type"] == code
        assert event.attributes["exception.message"] == str(error)
        attributes = span.attributes
        assert attributes["bedrock_trace.error_code"] == code
        assert attributes["bedrock_trace.http_status"] == status
        assert attributes["bedrock_trace.request_id"] == bedrock.standin.requests[-1].request_id
        assert attributes["mlflow.llm.model"] == MODEL_ID
        assert "mlflow.chat.tokenUsage" not in attributes
        assert "mlflow.llm.cost" not in attributes
        assert span.inputs["modelId"] == MODEL_ID

    def test_search_finds_the_error_trace(
        self, store, bedrock, mlflow_experiment, rule, code, status
    ):
        """Server-side searches by trace status and by our error code find the failed call."""
        self._fail_call(bedrock, rule)
        trace_id = stored(store).info.trace_id
        location = [mlflow_experiment.experiment_id]
        by_status = store.search_traces(locations=location, filter_string="trace.status = 'ERROR'")
        # Span attribute values are stored JSON-encoded: equality needs the quotes, LIKE not.
        by_code = store.search_traces(
            locations=location,
            filter_string=f"span.attributes.`bedrock_trace.error_code` LIKE '%{code}%'",
        )
        assert trace_id in {trace.info.trace_id for trace in by_status}
        assert trace_id in {trace.info.trace_id for trace in by_code}


class TestSecretsOnServer:
    """What the server stores about a traced call."""

    def test_credentials_never_reach_the_server(self, store, bedrock: Bedrock, mlflow_server):
        """Neither the stored traces nor any file the server wrote contain the session's
        access key, secret key or session token."""
        trace_ids = []
        demo.basic(bedrock.client, MODEL_ID, io.StringIO())
        trace_ids.append(mlflow.get_last_active_trace_id())
        demo.streaming(bedrock.client, MODEL_ID, io.StringIO())
        trace_ids.append(mlflow.get_last_active_trace_id())
        bedrock.standin.reset({"rules": [{"operation": "converse", "throttle": 5}]})
        with pytest.raises(ClientError):
            demo.basic(bedrock.client, MODEL_ID, io.StringIO())
        trace_ids.append(mlflow.get_last_active_trace_id())
        flush_traces()
        traces = [store.get_trace(trace_id) for trace_id in trace_ids]
        on_disk = mlflow_server.stored_bytes()
        # The scan sees the stored spans: the last call's request id is there.
        assert bedrock.standin.requests[-1].request_id.encode() in on_disk
        for secret in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN):
            for trace in traces:
                assert secret not in trace.to_json()
            assert secret.encode() not in on_disk


class TestDemoCommandOnServer:
    """``bedrock-trace demo --tracking-uri <server>``."""

    def test_demo_prints_the_four_traces_and_the_server_has_them(
        self, store, mlflow_server, mlflow_experiment, monkeypatch
    ):
        """The demo prints four OK trace trees and UI links on the server, and the server
        holds exactly those traces in the demo's experiment."""
        monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
        experiment = f"{mlflow_experiment.name}.demo"
        out = io.StringIO()
        try:
            code = demo.run(
                ["--tracking-uri", mlflow_server.url, "--experiment", experiment], out=out
            )
        finally:
            # The demo made its experiment the active one; later tests use the module's.
            mlflow.set_experiment(experiment_id=mlflow_experiment.experiment_id)
        text = out.getvalue()
        assert code == 0, text
        assert "bedrock-trace demo: the Bedrock stand-in at http://127.0.0.1:" in text
        printed = re.findall(r"^trace (tr-[0-9a-f]+) \((\w+)\)$", text, re.MULTILINE)
        assert [state for _, state in printed] == ["OK", "OK", "OK", "OK"]
        lines = text.splitlines()
        basic = lines.index(f"trace {printed[0][0]} (OK)")
        assert lines[basic + 1].startswith("└─ BedrockRuntime.converse [CHAT_MODEL]")
        assert lines[basic + 1].endswith(", tokens 16 in / 15 out, OK")
        stream = lines.index(f"trace {printed[1][0]} (OK)")
        assert lines[stream + 1].startswith("└─ BedrockRuntime.converse_stream [CHAT_MODEL]")
        assert lines[stream + 1].endswith(", tokens 14 in / 19 out, 12 events, OK")
        agent = lines.index(f"trace {printed[2][0]} (OK)")
        assert lines[agent + 1].startswith("└─ weather_agent [AGENT]")
        assert lines[agent + 2].startswith("   ├─ BedrockRuntime.converse [CHAT_MODEL]")
        assert lines[agent + 3].startswith("   ├─ get_weather [TOOL]")
        assert lines[agent + 4].startswith("   └─ BedrockRuntime.converse [CHAT_MODEL]")
        bedrock_agent = lines.index(f"trace {printed[3][0]} (OK)")
        assert lines[bedrock_agent + 1].startswith("└─ BedrockAgentRuntime.invoke_agent [AGENT]")
        tree = "\n".join(lines[bedrock_agent + 1 : bedrock_agent + 12])
        for part in (
            "preProcessing [CHAIN]",
            "knowledgeBaseLookup [RETRIEVER]",
            "get_weather [TOOL]",
        ):
            assert part in tree, tree

        experiment_id = store.get_experiment_by_name(experiment).experiment_id
        for trace_id, _ in printed:
            assert f"{mlflow_server.url}/#/experiments/{experiment_id}/traces/{trace_id}" in text
        flush_traces()
        found = store.search_traces(locations=[experiment_id])
        assert {t.info.trace_id for t in found} == {trace_id for trace_id, _ in printed}
        by_id = {t.info.trace_id: t for t in found}
        assert [s.name for s in by_id[printed[1][0]].data.spans] == [
            "BedrockRuntime.converse_stream"
        ]
        stored = by_id[printed[3][0]].data.spans
        (lookup,) = [span for span in stored if span.span_type == "RETRIEVER"]
        assert lookup.outputs[0]["metadata"]["doc_uri"] == "s3://example-handbook/travel-policy.md"
