"""The stand-in's Agents for Amazon Bedrock Runtime side, read by real boto3 clients over HTTP.

Besides what botocore parses, the raw JSON of every response and stream event is checked
against botocore's own service model: botocore's parser drops members it does not know, so a
misspelt field would otherwise pass unnoticed.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError
from botocore.model import Shape

from bedrock_trace.standin import (
    AGENT_OPERATIONS,
    DEFAULT_AGENT_STEPS,
    Reply,
    Rule,
    Scenario,
    StandIn,
)

from .agent_events import NODE_DEPENDENCY_TRACE

ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})
AGENT = "AGENT12345"
ALIAS = "TSTALIASID"
KB = "KBEXAMPLE1"
CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
MODEL_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{CLAUDE}"
QUESTION = "What does the travel policy say about flights to Paris?"


MODEL = botocore.session.get_session().get_service_model("bedrock-agent-runtime")


def make_client(server: StandIn) -> Any:
    """A bedrock-agent-runtime client with dummy credentials, pointed at the stand-in."""
    return boto3.Session(
        aws_access_key_id="AKIAFAKE", aws_secret_access_key="fake", region_name="us-east-1"
    ).client("bedrock-agent-runtime", endpoint_url=server.endpoint_url, config=ONE_ATTEMPT)


@pytest.fixture
def server() -> Iterator[StandIn]:
    """A stand-in with no rules (the default agent)."""
    with StandIn() as running:
        yield running


@pytest.fixture
def client(server: StandIn) -> Any:
    """A client of ``server``, one attempt per call."""
    return make_client(server)


def invoke(client: Any, text: str = QUESTION, **extra: Any) -> dict[str, Any]:
    """invoke_agent with tracing on."""
    arguments = {
        "agentId": AGENT,
        "agentAliasId": ALIAS,
        "sessionId": "session-1",
        "inputText": text,
        "enableTrace": True,
        **extra,
    }
    return dict(client.invoke_agent(**arguments))


def events_of(response: dict[str, Any], stream: str = "completion") -> list[tuple[str, Any]]:
    """The stream's events as (event name, payload), read to the end."""
    return [next(iter(event.items())) for event in response[stream]]


def traces(events: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The TraceParts of the ``trace`` events."""
    return [payload for name, payload in events if name == "trace"]


def member(part: dict[str, Any]) -> tuple[str, str, Any]:
    """(trace kind, union member, its value) of a TracePart: one member each."""
    ((kind, value),) = part["trace"].items()
    if kind in ("guardrailTrace", "failureTrace"):
        return kind, kind, value
    ((name, inner),) = value.items()
    return kind, name, inner


def drain(events: Any, received: list[Any]) -> None:
    """Read a stream's events into ``received`` until it ends or raises."""
    for event in events:
        received.append(event)


def answer_text(events: list[tuple[str, Any]]) -> str:
    """The chunks' bytes joined, decoded."""
    return b"".join(p["bytes"] for name, p in events if name == "chunk").decode("utf-8")


# --- checking raw JSON against botocore's model --------------------------------------------


def unknown_members(shape: Shape, value: Any, path: str = "") -> list[str]:
    """Paths of JSON object keys the shape does not declare (recursively)."""
    problems: list[str] = []
    if shape.type_name == "structure" and isinstance(value, dict):
        if shape.name == "Document":  # free-form JSON
            return problems
        for key, item in value.items():
            if key not in shape.members:
                problems.append(f"{path}.{key} (not in {shape.name})")
            else:
                problems += unknown_members(shape.members[key], item, f"{path}.{key}")
    elif shape.type_name == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            problems += unknown_members(shape.member, item, f"{path}[{index}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            problems += unknown_members(shape.value, item, f"{path}[{key}]")
    return problems


def raw_post(server: StandIn, path: str, body: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """POST a JSON body as botocore would; the response headers and raw bytes."""
    request = urllib.request.Request(
        server.endpoint_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(response.headers), response.read()


def raw_events(data: bytes) -> list[tuple[str, str, dict[str, Any]]]:
    """(message type, event or exception type, JSON payload) of each event-stream message."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    messages = []
    for message in buffer:
        headers = message.headers
        kind = headers.get(":event-type") or headers.get(":exception-type")
        messages.append((headers[":message-type"], kind, json.loads(message.payload or b"{}")))
    return messages


def assert_stream_matches_model(output_shape: str, member_name: str, data: bytes) -> None:
    stream = MODEL.shape_for(output_shape).members[member_name]
    seen = set()
    for message_type, kind, payload in raw_events(data):
        assert kind in stream.members, f"{kind} is not an event of {stream.name}"
        seen.add(kind)
        assert unknown_members(stream.members[kind], payload, kind) == [], message_type
    assert seen


# --- invoke_agent --------------------------------------------------------------------------


class TestInvokeAgent:
    """invoke_agent: the default agent's trace and answer, as botocore parses them."""

    def test_default_agent_checks_searches_calls_and_answers(self, client):
        """Pre-processing, a knowledge-base lookup, an action group call, then the answer."""
        response = invoke(client)
        assert response["sessionId"] == "session-1"
        assert response["contentType"] == "application/json"
        events = events_of(response)
        parts = traces(events)
        kinds = [member(p)[:2] for p in parts]
        assert kinds[:2] == [
            ("preProcessingTrace", "modelInvocationInput"),
            ("preProcessingTrace", "modelInvocationOutput"),
        ]
        inputs = [m[2] for m in map(member, parts) if m[1] == "invocationInput"]
        assert [i["invocationType"] for i in inputs] == ["KNOWLEDGE_BASE", "ACTION_GROUP"]
        assert inputs[0]["knowledgeBaseLookupInput"] == {"knowledgeBaseId": KB, "text": QUESTION}
        action = inputs[1]["actionGroupInvocationInput"]
        assert action["function"] == "get_weather"
        assert action["parameters"] == [{"name": "city", "type": "string", "value": "Paris"}]
        observations = [m[2] for m in map(member, parts) if m[1] == "observation"]
        assert [o["type"] for o in observations] == ["KNOWLEDGE_BASE", "ACTION_GROUP", "FINISH"]
        references = observations[0]["knowledgeBaseLookupOutput"]["retrievedReferences"]
        assert references[0]["location"]["s3Location"]["uri"].endswith("travel-policy.md")
        assert "Paris" in observations[1]["actionGroupInvocationOutput"]["text"]
        final = observations[2]["finalResponse"]["text"]
        assert answer_text(events) == final
        (chunk,) = [p for name, p in events if name == "chunk"]
        (citation,) = chunk["attribution"]["citations"]
        assert citation["retrievedReferences"][0]["location"]["type"] == "S3"
        part = citation["generatedResponsePart"]["textResponsePart"]
        assert final[part["span"]["start"] : part["span"]["end"] + 1] == part["text"]

    def test_model_invocations_carry_model_usage_and_raw_response(self, client):
        """Each modelInvocationOutput: usage in metadata, a raw response; input: the model."""
        parts = traces(events_of(invoke(client)))
        model_inputs = [m[2] for m in map(member, parts) if m[1] == "modelInvocationInput"]
        outputs = [m[2] for m in map(member, parts) if m[1] == "modelInvocationOutput"]
        assert len(model_inputs) == len(outputs) == 4  # pre, two steps, the final answer
        assert {i["foundationModel"] for i in model_inputs} == {
            "anthropic.claude-3-5-haiku-20241022-v1:0"
        }
        assert [i["type"] for i in model_inputs] == ["PRE_PROCESSING"] + ["ORCHESTRATION"] * 3
        for invocation_input, output in zip(model_inputs, outputs, strict=True):
            assert output["traceId"] == invocation_input["traceId"]
            usage = output["metadata"]["usage"]
            assert usage["inputTokens"] > 0
            assert usage["outputTokens"] > 0
            assert output["metadata"]["startTime"] < output["metadata"]["endTime"]
            assert json.loads(output["rawResponse"]["content"])["type"] == "message"
        assert outputs[0]["parsedResponse"]["isValid"] is True
        assert outputs[1]["reasoningContent"]["reasoningText"]["text"]

    def test_trace_ids_group_the_steps(self, client):
        """A step's events share the traceId inside their member; pre-processing has its own."""
        parts = traces(events_of(invoke(client)))
        ids = [member(p)[2]["traceId"] for p in parts]
        assert ids[0].endswith("-pre-0")
        assert ids[1] == ids[0]
        steps = sorted({i for i in ids[2:]})
        assert [s.rsplit("-", 1)[1] for s in steps] == ["0", "1", "2"]
        assert len({i.rsplit("-", 1)[0] for i in steps}) == 1

    def test_event_times_are_stamped_in_order(self, client):
        """eventTime on every part, non-decreasing, near now; ids of the agent on each part."""
        before = datetime.now().astimezone()
        parts = traces(events_of(invoke(client)))
        times = [p["eventTime"] for p in parts]
        assert times == sorted(times)
        assert abs((times[0] - before).total_seconds()) < 5
        for part in parts:
            assert (part["agentId"], part["agentAliasId"], part["sessionId"]) == (
                AGENT,
                ALIAS,
                "session-1",
            )
            assert [c["agentAliasArn"] for c in part["callerChain"]] == [
                f"arn:aws:bedrock:us-east-1:123456789012:agent-alias/{AGENT}/{ALIAS}"
            ]

    def test_without_enable_trace_only_the_answer_arrives(self, client):
        """enableTrace false: chunks only."""
        events = events_of(invoke(client, enableTrace=False))
        assert {name for name, _ in events} == {"chunk"}
        assert "Paris" in answer_text(events)

    def test_stream_final_response_sends_the_answer_in_pieces(self, server, client):
        """streamingConfigurations.streamFinalResponse: several chunks, same text."""
        server.add(Rule(operation="invoke_agent", reply=Reply(text="one two three four")))
        events = events_of(invoke(client, streamingConfigurations={"streamFinalResponse": True}))
        chunks = [p for name, p in events if name == "chunk"]
        assert len(chunks) == 4
        assert answer_text(events) == "one two three four"

    def test_stream_final_response_splits_the_default_answer_too(self, client):
        """The scripted answer (no reply text) arrives word by word, citations on the last."""
        events = events_of(invoke(client, streamingConfigurations={"streamFinalResponse": True}))
        chunks = [p for name, p in events if name == "chunk"]
        assert len(chunks) > 10
        final = [member(p)[2] for p in traces(events) if member(p)[1] == "observation"][-1]
        assert answer_text(events) == final["finalResponse"]["text"]
        assert [("attribution" in c) for c in chunks] == [False] * (len(chunks) - 1) + [True]

    def test_reply_tokens_set_every_model_invocation(self, server, client):
        """Reply token counts apply to each model invocation (so the sum is predictable)."""
        server.add(Rule(reply=Reply(input_tokens=100, output_tokens=7)))
        parts = traces(events_of(invoke(client)))
        usages = [
            m[2]["metadata"]["usage"] for m in map(member, parts) if m[1] == "modelInvocationOutput"
        ]
        assert usages == [{"inputTokens": 100, "outputTokens": 7}] * 4

    def test_collaborator_events_nest_by_caller_chain(self, server, client):
        """The collaborator's own events: a longer callerChain and its name; the supervisor's
        observation of it comes back on the supervisor's chain."""
        server.add(Rule(reply=Reply(steps=["collaborator"])))
        parts = traces(events_of(invoke(client)))
        depths = [(len(p["callerChain"]), member(p)[1]) for p in parts]
        assert depths == [
            (1, "modelInvocationInput"),
            (1, "modelInvocationOutput"),
            (1, "rationale"),
            (1, "invocationInput"),
            (2, "modelInvocationInput"),
            (2, "modelInvocationOutput"),
            (2, "rationale"),
            (2, "observation"),
            (1, "observation"),
            (1, "modelInvocationInput"),
            (1, "modelInvocationOutput"),
            (1, "observation"),
        ]
        inner = [p for p in parts if len(p["callerChain"]) == 2]
        assert {p["collaboratorName"] for p in inner} == {"ResearchAgent"}
        call = member(parts[3])[2]["agentCollaboratorInvocationInput"]
        assert call["agentCollaboratorName"] == "ResearchAgent"
        assert inner[0]["callerChain"][1]["agentAliasArn"] == call["agentCollaboratorAliasArn"]
        result = member(parts[8])[2]
        assert result["type"] == "AGENT_COLLABORATOR"
        assert result["agentCollaboratorInvocationOutput"]["output"]["text"].startswith(
            "ResearchAgent found:"
        )

    def test_guardrail_intervention_ends_with_the_blocked_message(self, server, client):
        """guardrailTrace INTERVENED with its assessment; the answer is the blocked message."""
        server.add(Rule(contains="weapons", reply=Reply(steps=["guardrail", "knowledge_base"])))
        events = events_of(invoke(client, "How do I build weapons?"))
        (part,) = traces(events)
        kind, _name, trace = member(part)
        assert kind == "guardrailTrace"
        assert trace["action"] == "INTERVENED"
        assert trace["traceId"].endswith("-guardrail-pre-0")
        topic = trace["inputAssessments"][0]["topicPolicy"]["topics"][0]
        assert topic["action"] == "BLOCKED"
        assert answer_text(events) == "Sorry, the model cannot answer this question."

    def test_failure_trace_then_dependency_failed(self, server, client):
        """A failing action group: failureTrace (integer code), then the stream raises."""
        server.add(Rule(agent=AGENT, reply=Reply(steps=["failure"])))
        received: list[Any] = []
        with pytest.raises(EventStreamError) as raised:
            drain(invoke(client)["completion"], received)
        assert raised.value.response["Error"]["Code"] == "dependencyFailedException"
        kinds = [member(e["trace"]) for e in received]
        failure = kinds[-1][2]
        assert kinds[-1][0] == "failureTrace"
        assert failure["failureCode"] == 424
        assert "Lambda" in failure["failureReason"]
        assert failure["traceId"] == kinds[-2][2]["traceId"]  # the step whose call failed

    def test_return_control_hands_the_call_over_then_answers_from_the_result(self, server, client):
        """returnControl ends the stream; the next call's results make the answer."""
        server.add(Rule(reply=Reply(steps=["return_control"]), times=1))
        events = events_of(invoke(client))
        name, payload = events[-1]
        assert name == "returnControl"
        (call,) = payload["invocationInputs"]
        function = call["functionInvocationInput"]
        assert (function["actionGroup"], function["function"], function["agentId"]) == (
            "TravelActions",
            "get_weather",
            AGENT,
        )
        assert answer_text(events) == ""
        state = {
            "invocationId": payload["invocationId"],
            "returnControlInvocationResults": [
                {
                    "functionResult": {
                        "actionGroup": "TravelActions",
                        "function": "get_weather",
                        "responseBody": {"TEXT": {"body": "Rain, 12 degrees"}},
                    }
                }
            ],
        }
        events = events_of(invoke(client, "", sessionState=state))
        assert answer_text(events) == "Rain, 12 degrees"

    def test_code_interpreter_and_its_files(self, server, client):
        """codeInterpreterInvocationInput / Output, then a files event with binary content."""
        server.add(Rule(reply=Reply(steps=["code_interpreter", "files"])))
        events = events_of(invoke(client, "Sum my expenses"))
        parts = [member(p) for p in traces(events)]
        (code,) = [m[2] for m in parts if m[1] == "invocationInput"]
        assert code["invocationType"] == "ACTION_GROUP_CODE_INTERPRETER"
        assert "print" in code["codeInterpreterInvocationInput"]["code"]
        output = next(m[2] for m in parts if m[1] == "observation")
        assert output["codeInterpreterInvocationOutput"]["executionOutput"] == "total: 157 EUR"
        ((_, files),) = [e for e in events if e[0] == "files"]
        by_name = {f["name"]: f for f in files["files"]}
        assert by_name["expenses.csv"]["bytes"].startswith(b"day,amount")
        assert by_name["chart.png"]["bytes"].startswith(b"\x89PNG")

    def test_post_processing_follows_the_steps(self, server, client):
        """postProcessingTrace: a model invocation with a parsed response."""
        server.add(Rule(reply=Reply(steps=["action_group", "post_processing"])))
        parts = [member(p) for p in traces(events_of(invoke(client)))]
        post = [m for m in parts if m[0] == "postProcessingTrace"]
        assert [m[1] for m in post] == ["modelInvocationInput", "modelInvocationOutput"]
        assert post[1][2]["parsedResponse"]["text"]
        assert post[0][2]["type"] == "POST_PROCESSING"

    def test_rules_select_by_agent_id_and_question(self, server, client):
        """``agent`` matches the agent id, ``contains`` the question."""
        server.add(
            Rule(agent="OTHER", reply=Reply(text="other agent")),
            Rule(operation="InvokeAgent", contains="paris", reply=Reply(text="about Paris")),
        )
        assert answer_text(events_of(invoke(client))) == "about Paris"
        response = client.invoke_agent(
            agentId="OTHERAGENT", agentAliasId=ALIAS, sessionId="s2", inputText="hi"
        )
        assert answer_text(events_of(response)) == "other agent"
        assert [r.resource_id for r in server.requests] == [AGENT, "OTHERAGENT"]
        assert [r.rule for r in server.requests] == [1, 0]

    def test_service_errors_use_the_agent_runtime_status_codes(self, server, client):
        """ConflictException is 409 and ModelNotReadyException 424 here (not as in Runtime)."""
        server.add(
            Rule(contains="conflict", error="ConflictException"),
            Rule(contains="ready", error="ModelNotReadyException"),
            Rule(contains="dependency", error="DependencyFailedException"),
        )
        for text, code, status in (
            ("conflict", "ConflictException", 409),
            ("ready", "ModelNotReadyException", 424),
            ("dependency", "DependencyFailedException", 424),
        ):
            with pytest.raises(ClientError) as raised:
                invoke(client, text)
            assert raised.value.response["Error"]["Code"] == code
            assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status

    def test_stream_error_and_throttle_apply_to_agent_streams(self, server, client):
        """The stand-in's faults work on agent streams as on model streams."""
        server.add(
            Rule(contains="break", stream_error={"after": 2, "exception": "throttlingException"}),
            Rule(contains="busy", throttle=1, times=1),
        )
        received: list[Any] = []
        with pytest.raises(EventStreamError):
            drain(invoke(client, "break please")["completion"], received)
        assert len(received) == 2
        with pytest.raises(ClientError, match="ThrottlingException"):
            invoke(client, "busy now")
        assert answer_text(events_of(invoke(client, "busy now")))

    def test_unknown_step_names_fail_at_load_time(self):
        """A misspelt step is a ValueError naming the known ones."""
        with pytest.raises(ValueError, match="knowledge_base"):
            Scenario.from_dict([{"reply": {"steps": ["knowledgebase"]}}])
        assert Scenario.from_dict([{"reply": {"steps": list(DEFAULT_AGENT_STEPS)}}])


class TestInvokeInlineAgent:
    """invoke_inline_agent: the request configures the agent."""

    def test_inline_agent_uses_its_model_knowledge_base_and_function(self, server, client):
        """foundationModel, knowledge base and function from the request; no agent ids."""
        response = client.invoke_inline_agent(
            sessionId="inline-1",
            foundationModel=CLAUDE,
            instruction="You are a travel helper who answers questions.",
            agentName="TravelHelper",
            inputText=QUESTION,
            enableTrace=True,
            knowledgeBases=[{"knowledgeBaseId": "KBINLINE01", "description": "handbook"}],
            actionGroups=[
                {
                    "actionGroupName": "Forecasts",
                    "actionGroupExecutor": {"customControl": "RETURN_CONTROL"},
                    "functionSchema": {
                        "functions": [
                            {"name": "forecast", "parameters": {"city": {"type": "string"}}}
                        ]
                    },
                }
            ],
        )
        assert response["sessionId"] == "inline-1"
        events = events_of(response)
        parts = traces(events)
        assert parts
        for part in parts:
            assert "agentId" not in part
            assert "callerChain" not in part
        values = [member(p)[2] for p in parts]
        assert {v["foundationModel"] for v in values if "foundationModel" in v} == {CLAUDE}
        inputs = [v for v in values if "invocationType" in v]
        assert inputs[0]["knowledgeBaseLookupInput"]["knowledgeBaseId"] == "KBINLINE01"
        assert inputs[1]["actionGroupInvocationInput"]["function"] == "forecast"
        assert server.requests[0].resource_id == "TravelHelper"
        assert server.requests[0].model_id == CLAUDE


class TestKnowledgeBases:
    """retrieve, retrieve_and_generate(_stream) and rerank."""

    def test_retrieve_ranks_passages_with_scores_and_locations(self, client):
        """Best first, numberOfResults honoured, each with content, location and metadata."""
        response = client.retrieve(
            knowledgeBaseId=KB,
            retrievalQuery={"text": "How many vacation days do I get?"},
            retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 2}},
        )
        results = response["retrievalResults"]
        assert len(results) == 2
        scores = [r["score"] for r in results]
        assert scores == sorted(scores, reverse=True)
        assert 0 < scores[-1] < scores[0] <= 1
        best = results[0]
        assert "25 days" in best["content"]["text"]
        assert best["location"] == {
            "type": "S3",
            "s3Location": {"uri": "s3://example-handbook/vacation.md"},
        }
        assert (
            best["metadata"]["x-amz-bedrock-kb-source-uri"] == best["location"]["s3Location"]["uri"]
        )

    def test_retrieve_returns_other_location_types(self, client):
        """Web and Confluence sources, as a knowledge base with several data sources has."""
        response = client.retrieve(
            knowledgeBaseId=KB,
            retrievalQuery={"text": "remote work security laptops"},
            retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 5}},
        )
        types = {r["location"]["type"] for r in response["retrievalResults"]}
        assert {"S3", "WEB", "CONFLUENCE"} <= types

    def test_retrieve_and_generate_cites_spans_of_its_text(self, server, client):
        """Each citation's span indexes the output text (end inclusive) and names its source."""
        response = client.retrieve_and_generate(
            input={"text": "How many vacation days do I get?"},
            retrieveAndGenerateConfiguration={
                "type": "KNOWLEDGE_BASE",
                "knowledgeBaseConfiguration": {"knowledgeBaseId": KB, "modelArn": MODEL_ARN},
            },
        )
        text = response["output"]["text"]
        assert response["sessionId"]
        assert len(response["citations"]) == 2
        for citation in response["citations"]:
            part = citation["generatedResponsePart"]["textResponsePart"]
            assert text[part["span"]["start"] : part["span"]["end"] + 1] == part["text"]
            assert citation["retrievedReferences"][0]["content"]["text"] in part["text"]
        assert server.requests[0].model_id == MODEL_ARN
        assert server.requests[0].resource_id == KB

    def test_stream_text_equals_the_non_stream_text(self, client):
        """retrieve_and_generate_stream: output pieces join into the same text; each citation
        event repeats its members at the top level, as the service does."""
        configuration = {
            "type": "KNOWLEDGE_BASE",
            "knowledgeBaseConfiguration": {"knowledgeBaseId": KB, "modelArn": MODEL_ARN},
        }
        question = {"text": "What about expenses for meals?"}
        whole = client.retrieve_and_generate(
            input=question, retrieveAndGenerateConfiguration=configuration
        )
        response = client.retrieve_and_generate_stream(
            input=question, retrieveAndGenerateConfiguration=configuration, sessionId="kb-s1"
        )
        assert response["sessionId"] == "kb-s1"
        events = events_of(response, "stream")
        text = "".join(p["text"] for name, p in events if name == "output")
        assert text == whole["output"]["text"]
        citations = [p for name, p in events if name == "citation"]
        assert len(citations) == 2
        for event in citations:
            assert event["generatedResponsePart"] == event["citation"]["generatedResponsePart"]
            assert event["retrievedReferences"] == event["citation"]["retrievedReferences"]

    def test_guardrail_intervention_in_retrieve_and_generate(self, server, client):
        """A rule's guardrail_action: guardrailAction INTERVENED, a guardrail stream event."""
        server.add(Rule(agent=KB, reply=Reply(guardrail_action="GUARDRAIL_INTERVENED")))
        configuration = {
            "type": "KNOWLEDGE_BASE",
            "knowledgeBaseConfiguration": {"knowledgeBaseId": KB, "modelArn": MODEL_ARN},
        }
        response = client.retrieve_and_generate(
            input={"text": "anything"}, retrieveAndGenerateConfiguration=configuration
        )
        assert response["guardrailAction"] == "INTERVENED"
        assert response["citations"] == []
        events = events_of(
            client.retrieve_and_generate_stream(
                input={"text": "anything"}, retrieveAndGenerateConfiguration=configuration
            ),
            "stream",
        )
        assert events[0] == ("guardrail", {"action": "INTERVENED"})

    def test_rerank_orders_sources_by_relevance(self, client):
        """Results best first; ``index`` points into the sources; numberOfResults honoured."""
        texts = ["Hotels cost up to 180 EUR", "Vacation days carry over", "Laptops are encrypted"]
        response = client.rerank(
            queries=[{"type": "TEXT", "textQuery": {"text": "unused vacation days"}}],
            sources=[
                {
                    "type": "INLINE",
                    "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": text}},
                }
                for text in texts
            ],
            rerankingConfiguration={
                "type": "BEDROCK_RERANKING_MODEL",
                "bedrockRerankingConfiguration": {
                    "numberOfResults": 2,
                    "modelConfiguration": {
                        "modelArn": "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"
                    },
                },
            },
        )
        results = response["results"]
        assert len(results) == 2
        assert results[0]["index"] == 1
        assert results[0]["document"]["textDocument"]["text"] == texts[1]
        assert results[0]["relevanceScore"] > results[1]["relevanceScore"]


class TestInvokeFlow:
    """invoke_flow: node traces, the output and the completion."""

    def test_flow_traces_each_node_then_outputs_and_completes(self, server, client):
        """Input, prompt and output nodes' traces with timestamps, then output and completion."""
        server.add(Rule(operation="invoke_flow", reply=Reply(text="Bonjour!")))
        response = client.invoke_flow(
            flowIdentifier="FLOWEX0001",
            flowAliasIdentifier="ALIASEX001",
            inputs=[
                {
                    "nodeName": "FlowInputNode",
                    "nodeOutputName": "document",
                    "content": {"document": "Say hello in French"},
                }
            ],
            enableTrace=True,
        )
        assert response["executionId"]
        events = events_of(response, "responseStream")
        names = [name for name, _ in events]
        assert names == ["flowTraceEvent"] * 5 + ["flowOutputEvent", "flowCompletionEvent"]
        node_traces = [next(iter(p["trace"].items())) for name, p in events[:5]]
        assert [(kind, value["nodeName"]) for kind, value in node_traces] == [
            ("nodeOutputTrace", "FlowInputNode"),
            ("nodeInputTrace", "Answer"),
            ("nodeActionTrace", "Answer"),
            ("nodeOutputTrace", "Answer"),
            ("nodeInputTrace", "FlowOutputNode"),
        ]
        stamps = [value["timestamp"] for _kind, value in node_traces]
        assert stamps == sorted(stamps)
        assert events[5][1] == {
            "nodeName": "FlowOutputNode",
            "nodeType": "FlowOutputNode",
            "content": {"document": "Bonjour!"},
        }
        assert events[6][1] == {"completionReason": "SUCCESS"}
        assert server.requests[0].resource_id == "FLOWEX0001"
        assert server.requests[0].user_text == "Say hello in French"

    def test_without_trace_only_output_and_completion(self, client):
        """enableTrace off: no flowTraceEvent."""
        response = client.invoke_flow(
            flowIdentifier="FLOWEX0001",
            flowAliasIdentifier="ALIASEX001",
            inputs=[
                {
                    "nodeName": "FlowInputNode",
                    "nodeOutputName": "document",
                    "content": {"document": {"question": "hi"}},
                }
            ],
        )
        names = [name for name, _ in events_of(response, "responseStream")]
        assert names == ["flowOutputEvent", "flowCompletionEvent"]


class TestWireFormat:
    """The raw JSON of every response and event declares only members of botocore's model."""

    def test_every_agent_event_member_is_in_the_service_model(self, server):
        """All the steps, traced, against ResponseStream's event shapes."""
        steps = [
            "pre_processing",
            "knowledge_base",
            "action_group",
            "code_interpreter",
            "files",
            "collaborator",
            "post_processing",
        ]
        path = f"/agents/{AGENT}/agentAliases/{ALIAS}/sessions/s1/text"
        for extra in (["guardrail"], ["failure"], ["return_control"], []):
            server.reset([Rule(reply=Reply(steps=steps + extra))])
            headers, data = raw_post(server, path, {"inputText": QUESTION, "enableTrace": True})
            assert headers["Content-Type"] == "application/vnd.amazon.eventstream"
            assert_stream_matches_model("InvokeAgentResponse", "completion", data)

    def test_every_inline_agent_event_member_is_in_the_service_model(self, server):
        """Inline agents' trace parts have no agent ids, as InlineAgentTracePart has none."""
        server.reset([Rule(reply=Reply(steps=["knowledge_base", "collaborator", "files"]))])
        body = {"inputText": QUESTION, "enableTrace": True, "foundationModel": CLAUDE}
        _headers, data = raw_post(server, "/agents/inline-1", body)
        assert_stream_matches_model("InvokeInlineAgentResponse", "completion", data)

    @pytest.mark.skipif(
        not NODE_DEPENDENCY_TRACE,
        reason="checked against a current botocore model: an older one (the oldest supported "
        "botocore) lacks flow trace members added since, which botocore drops when parsing",
    )
    def test_knowledge_base_and_flow_bodies_are_in_the_service_model(self, server):
        """retrieve, retrieve_and_generate, rerank bodies; the two streams' events."""
        configuration = {
            "type": "KNOWLEDGE_BASE",
            "knowledgeBaseConfiguration": {"knowledgeBaseId": KB, "modelArn": MODEL_ARN},
        }
        for path, body, shape in (
            (
                f"/knowledgebases/{KB}/retrieve",
                {"retrievalQuery": {"text": "vacation"}, "guardrailConfiguration": {}},
                "RetrieveResponse",
            ),
            (
                "/retrieveAndGenerate",
                {"input": {"text": "vacation"}, "retrieveAndGenerateConfiguration": configuration},
                "RetrieveAndGenerateResponse",
            ),
            (
                "/rerank",
                {
                    "queries": [{"type": "TEXT", "textQuery": {"text": "x"}}],
                    "sources": [
                        {
                            "type": "INLINE",
                            "inlineDocumentSource": {"type": "JSON", "jsonDocument": {"a": 1}},
                        }
                    ],
                },
                "RerankResponse",
            ),
        ):
            _headers, data = raw_post(server, path, body)
            assert unknown_members(MODEL.shape_for(shape), json.loads(data)) == []
        body = {"input": {"text": "vacation"}, "retrieveAndGenerateConfiguration": configuration}
        _headers, data = raw_post(server, "/retrieveAndGenerateStream", body)
        assert_stream_matches_model("RetrieveAndGenerateStreamResponse", "stream", data)
        body = {
            "inputs": [{"content": {"document": "hi"}, "nodeName": "FlowInputNode"}],
            "enableTrace": True,
        }
        _headers, data = raw_post(server, "/flows/FLOWEX0001/aliases/ALIASEX001", body)
        assert_stream_matches_model("InvokeFlowResponse", "responseStream", data)

    def test_chunk_bytes_travel_base64_encoded(self, server):
        """PayloadPart.bytes is a blob: base64 in the JSON payload, as botocore expects."""
        server.reset([Rule(reply=Reply(text="héllo"))])
        path = f"/agents/{AGENT}/agentAliases/{ALIAS}/sessions/s1/text"
        _headers, data = raw_post(server, path, {"inputText": "hi"})
        ((_type, kind, payload),) = raw_events(data)
        assert kind == "chunk"
        assert base64.b64decode(payload["bytes"]).decode("utf-8") == "héllo"

    def test_every_operation_is_routed(self, server):
        """Each of AGENT_OPERATIONS reaches its answerer."""
        client = make_client(server)
        for name in AGENT_OPERATIONS:
            assert hasattr(client, name), name


ODD_BODIES = [
    (
        f"/agents/{AGENT}/agentAliases/{ALIAS}/sessions/s1/text",
        {"inputText": 5, "enableTrace": "yes", "sessionState": [], "streamingConfigurations": "x"},
    ),
    (
        f"/agents/{AGENT}/agentAliases/{ALIAS}/sessions/s1/text",
        {
            "inputText": "é🙂\u0000",
            "enableTrace": True,
            "sessionState": {"returnControlInvocationResults": [1, {"functionResult": []}]},
        },
    ),
    ("/agents/inline-1", {"inputText": "x", "knowledgeBases": [3], "actionGroups": ["a"]}),
    (
        f"/knowledgebases/{KB}/retrieve",
        {
            "retrievalQuery": "not an object",
            "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": -3}},
        },
    ),
    ("/retrieveAndGenerate", {"input": 3, "retrieveAndGenerateConfiguration": []}),
    ("/retrieveAndGenerateStream", {"input": {"text": ""}}),
    (
        "/rerank",
        {
            "queries": "x",
            "sources": [1, 2],
            "rerankingConfiguration": {"bedrockRerankingConfiguration": {"numberOfResults": -1}},
        },
    ),
    ("/flows/F/aliases/A", {"inputs": "x", "enableTrace": True}),
    ("/flows/F/aliases/A", {"inputs": [{"content": {"document": [1, {"a": None}]}}]}),
    (f"/agents/{AGENT}/agentAliases/{ALIAS}/sessions/s1/text", []),
]


class TestOddRequests:
    """Requests botocore would not send still get an answer, never a server error."""

    @pytest.mark.parametrize(("path", "body"), ODD_BODIES, ids=[str(i) for i in range(10)])
    def test_odd_bodies_are_answered(self, server, path, body):
        """Wrong types, negative counts, odd text: 200 and a well-formed body or stream."""
        headers, data = raw_post(server, path, body)
        if headers["Content-Type"] == "application/vnd.amazon.eventstream":
            assert [kind for _type, kind, _payload in raw_events(data)]
        else:
            assert isinstance(json.loads(data), dict)
        (request,) = server.requests
        assert request.outcome == "reply"


class TestEnvironment:
    """How a program finds the agent runtime side."""

    def test_environ_points_an_agent_runtime_client_at_the_stand_in(self, server, monkeypatch):
        """With environ() set, a bedrock-agent-runtime client made plainly reaches it."""
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        client = boto3.client("bedrock-agent-runtime", config=ONE_ATTEMPT)
        response = client.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "vacation"})
        assert response["retrievalResults"]
        assert server.requests[-1].operation == "retrieve"

    def test_importing_the_stand_in_does_not_import_mlflow(self):
        """The stand-in needs botocore and attrs only (``python -m bedrock_trace.standin``)."""
        code = "import sys, bedrock_trace.standin; print('mlflow' in sys.modules)"
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert result.stdout.strip() == "False"


class TestAsync:
    """aiobotocore reads the same streams (where installed)."""

    def test_aiobotocore_reads_every_agent_event(self, server):
        """invoke_agent through aiobotocore: the same events as through botocore."""
        aiobotocore_session = pytest.importorskip("aiobotocore.session")
        import asyncio

        server.reset([Rule(reply=Reply(steps=["knowledge_base", "collaborator", "files"]))])

        async def run() -> list[str]:
            session = aiobotocore_session.get_session()
            async with session.create_client(
                "bedrock-agent-runtime",
                region_name="us-east-1",
                endpoint_url=server.endpoint_url,
                aws_access_key_id="AKIAFAKE",
                aws_secret_access_key="fake",
            ) as client:
                response = await client.invoke_agent(
                    agentId=AGENT,
                    agentAliasId=ALIAS,
                    sessionId="s1",
                    inputText=QUESTION,
                    enableTrace=True,
                )
                return [next(iter(event)) async for event in response["completion"]]

        names = asyncio.run(run())
        sync = [name for name, _ in events_of(invoke(make_client(server)))]
        assert names == sync
        assert {"trace", "files", "chunk"} == set(names)
