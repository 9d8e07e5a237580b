"""A full agent run against the stand-in's scripted agent: the tree of DESIGN.md section 7,
identically through boto3 and aiobotocore, with every way the stream can end."""

from __future__ import annotations

import asyncio
import gc
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EventStreamError
from mlflow.entities import SpanStatusCode

import bedrock_trace
from bedrock_trace.standin import StandIn
from bedrock_trace.standin._agents import DEFAULT_AGENT_MODEL
from bedrock_trace.testing import flush

from .agent_tree import tree
from .conftest import ACCESS_KEY, REGION, SECRET_KEY

STEPS = [
    "pre_processing",
    "knowledge_base",
    "action_group",
    "code_interpreter",
    "files",
    "collaborator",
    "post_processing",
]
KWARGS = {
    "agentId": "AGENT12345",
    "agentAliasId": "ALIAS12345",
    "sessionId": "session-standin-1",
    "inputText": "What is the travel policy, and the weather in Paris?",
    "enableTrace": True,
}
LLM = (DEFAULT_AGENT_MODEL, "LLM", [])
EXPECTED = (
    "BedrockAgentRuntime.invoke_agent",
    "AGENT",
    [
        ("preProcessing", "CHAIN", [LLM]),
        ("orchestration", "CHAIN", [LLM, ("knowledgeBaseLookup", "RETRIEVER", [])]),
        ("orchestration", "CHAIN", [LLM, ("get_weather", "TOOL", [])]),
        ("orchestration", "CHAIN", [LLM, ("codeInterpreter", "TOOL", [])]),
        (
            "orchestration",
            "CHAIN",
            [LLM, ("ResearchAgent", "AGENT", [("orchestration", "CHAIN", [LLM])])],
        ),
        ("orchestration", "CHAIN", [LLM]),
        ("postProcessing", "CHAIN", [LLM]),
    ],
)
MODES = ["sync", "async"]


@pytest.fixture
def server() -> Iterator[StandIn]:
    with StandIn() as srv:
        yield srv


def settle() -> None:
    gc.collect()
    flush()


def _sync_run(server: StandIn, how: str) -> list[Any]:
    session = boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    bedrock_trace.register(session)
    client = session.client(
        "bedrock-agent-runtime",
        endpoint_url=server.endpoint_url,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    try:
        stream = client.invoke_agent(**KWARGS)["completion"]
        if how == "drop":
            del stream
            return []
        received = []
        for event in stream:
            received.append(event)
            if how in ("break", "close") and len(received) == 12:
                if how == "close":
                    stream.close()
                break
        return received
    finally:
        bedrock_trace.unregister(session)


def _async_run(server: StandIn, how: str) -> list[Any]:
    aiobotocore_session = pytest.importorskip("aiobotocore.session")
    from aiobotocore.config import AioConfig

    session = aiobotocore_session.get_session()
    session.set_credentials(ACCESS_KEY, SECRET_KEY)
    bedrock_trace.register(session)

    async def main() -> list[Any]:
        async with session.create_client(
            "bedrock-agent-runtime",
            region_name=REGION,
            endpoint_url=server.endpoint_url,
            config=AioConfig(retries={"mode": "standard", "total_max_attempts": 1}),
        ) as client:
            stream = (await client.invoke_agent(**KWARGS))["completion"]
            if how == "drop":
                del stream
                return []
            received = []
            async for event in stream:
                received.append(event)
                if how in ("break", "close") and len(received) == 12:
                    if how == "close":
                        stream.close()
                    break
            return received

    try:
        return asyncio.run(main())
    finally:
        bedrock_trace.unregister(session)


def run(mode: str, server: StandIn, how: str = "exhaust") -> list[Any]:
    return (_sync_run if mode == "sync" else _async_run)(server, how)


def check_nesting(spans: list[Any]) -> Any:
    by_id = {span.span_id: span for span in spans}
    for span in spans:
        parent = by_id.get(span.parent_id)
        if parent is not None:
            assert parent.start_time_ns <= span.start_time_ns <= span.end_time_ns
            assert span.end_time_ns <= parent.end_time_ns
    (root,) = [span for span in spans if span.parent_id is None]
    return root


@pytest.mark.parametrize("mode", MODES)
class TestStandInAgentRun:
    """The stand-in's scripted agent, traced."""

    def test_full_run_tree(self, capture, server, mode):
        """Names, types, nesting, usage summed, documents, session: the same sync and async."""
        server.add({"operation": "invoke_agent", "reply": {"steps": STEPS}})
        events = run(mode, server)
        assert any("chunk" in event for event in events)
        spans = capture.spans
        name, span_type, steps = tree(spans)
        # Compared as a multiset of steps: where the scripted agent places post-processing
        # relative to its last orchestration step is its own choice.
        assert (name, span_type, sorted(steps, key=repr)) == (
            EXPECTED[0],
            EXPECTED[1],
            sorted(EXPECTED[2], key=repr),
        )
        root = check_nesting(spans)
        llm_usage = [s.attributes["mlflow.chat.tokenUsage"] for s in spans if s.span_type == "LLM"]
        assert len(llm_usage) == 8
        for key in ("input_tokens", "output_tokens", "total_tokens"):
            assert root.attributes["mlflow.chat.tokenUsage"][key] == sum(u[key] for u in llm_usage)
        (retriever,) = [s for s in spans if s.span_type == "RETRIEVER"]
        assert retriever.outputs
        for document in retriever.outputs:
            assert document["page_content"]
            assert document["metadata"]["doc_uri"]
        assert root.outputs["completion"]
        assert [f["name"] for f in root.outputs["files"]] == ["expenses.csv", "chart.png"]
        assert all(f["bytes"].startswith("[binary ") for f in root.outputs["files"])
        (trace,) = capture.traces
        assert trace.info.trace_metadata["mlflow.trace.session"] == KWARGS["sessionId"]

    @pytest.mark.parametrize("how", ["break", "close", "drop"])
    def test_ended_early(self, capture, server, mode, how):
        """Broken off, closed or dropped unread: every span ends, children inside parents."""
        server.add({"operation": "invoke_agent", "reply": {"steps": STEPS}})
        run(mode, server, how)
        settle()
        assert capture.open_traces() == 0
        root = check_nesting(capture.spans)
        assert root.attributes["bedrock_trace.incomplete"] is True
        assert root.status.status_code == SpanStatusCode.OK
        if how != "drop":
            assert len(capture.spans) > 3
            incomplete = [s for s in capture.spans if s.attributes.get("bedrock_trace.incomplete")]
            assert len(incomplete) > 1  # the root and the step it was in

    def test_error_mid_stream(self, capture, server, mode):
        """An exception event: the caller's error is botocore's; the root ERROR, all ended."""
        server.add(
            {
                "operation": "invoke_agent",
                "reply": {"steps": STEPS},
                "stream_error": {"after": 10, "exception": "throttlingException"},
            }
        )
        with pytest.raises(EventStreamError):
            run(mode, server)
        settle()
        assert capture.open_traces() == 0
        root = check_nesting(capture.spans)
        assert root.status.status_code == SpanStatusCode.ERROR
        assert root.attributes["bedrock_trace.error_code"] == "throttlingException"

    @pytest.mark.parametrize(
        ("step", "check"),
        [
            ("guardrail", "GUARDRAIL"),
            ("failure", "failure"),
            ("return_control", "returnControl"),
        ],
    )
    def test_endings_of_the_run(self, capture, server, mode, step, check):
        """A guardrail intervention, a failure, a returnControl: each shows in the tree."""
        server.add({"operation": "invoke_agent", "reply": {"steps": ["pre_processing", step]}})
        try:
            run(mode, server)
        except EventStreamError:
            assert step == "failure"  # the service's dependencyFailedException follows
        settle()
        assert capture.open_traces() == 0
        spans = capture.spans
        root = check_nesting(spans)
        if check == "GUARDRAIL":
            (guardrail,) = [s for s in spans if s.span_type == "GUARDRAIL"]
            assert guardrail.attributes["bedrock_trace.guardrail_action"] == "INTERVENED"
        elif check == "failure":
            failed = [s for s in spans if s.attributes.get("bedrock_trace.failure_reason")]
            assert failed
            assert failed[0].status.status_code == SpanStatusCode.ERROR
        else:
            assert root.outputs["returnControl"]["invocationInputs"]
            assert root.status.status_code == SpanStatusCode.OK


FLOW_KWARGS = {
    "flowIdentifier": "FLOW123456",
    "flowAliasIdentifier": "FALIAS1234",
    "inputs": [
        {
            "nodeName": "FlowInputNode",
            "nodeOutputName": "document",
            "content": {"document": "What is the capital of France?"},
        }
    ],
    "enableTrace": True,
}


def _flow(mode: str, server: StandIn) -> None:
    if mode == "sync":
        session = boto3.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        )
        bedrock_trace.register(session)
        client = session.client("bedrock-agent-runtime", endpoint_url=server.endpoint_url)
        list(client.invoke_flow(**FLOW_KWARGS)["responseStream"])
        bedrock_trace.unregister(session)
        return
    aiobotocore_session = pytest.importorskip("aiobotocore.session")
    aio = aiobotocore_session.get_session()
    aio.set_credentials(ACCESS_KEY, SECRET_KEY)
    bedrock_trace.register(aio)

    async def main() -> None:
        async with aio.create_client(
            "bedrock-agent-runtime", region_name=REGION, endpoint_url=server.endpoint_url
        ) as client:
            response = await client.invoke_flow(**FLOW_KWARGS)
            async for _event in response["responseStream"]:
                pass

    asyncio.run(main())
    bedrock_trace.unregister(aio)


@pytest.mark.parametrize("mode", MODES)
def test_flow_run(capture, server, mode):
    """invoke_flow against the stand-in's flow: a WORKFLOW span, one span per node."""
    _flow(mode, server)
    spans = capture.spans
    assert tree(spans) == (
        "BedrockAgentRuntime.invoke_flow",
        "WORKFLOW",
        [
            ("FlowInputNode", "CHAIN", []),
            ("Answer", "CHAIN", [("bedrock-runtime.Converse", "CHAT_MODEL", [])]),
            ("FlowOutputNode", "CHAIN", []),
        ],
    )
    root = check_nesting(spans)
    assert root.outputs["completionReason"] == "SUCCESS"
    (answer,) = [s for s in spans if s.name == "Answer"]
    assert answer.inputs == {"question": "What is the capital of France?"}


class TestDocsPage:
    """docs/agents.md's example runs as written against the stand-in."""

    def test_example_runs_and_traces(self, capture, server, monkeypatch):
        page = pathlib.Path(__file__).parent.parent / "docs" / "agents.md"
        (code,) = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        namespace: dict[str, Any] = {"__name__": "__docs__"}
        exec(compile(code, str(page), "exec"), namespace)
        assert namespace["answer"]
        name, span_type, steps = tree(capture.spans)
        assert (name, span_type) == ("BedrockAgentRuntime.invoke_agent", "AGENT")
        assert [step[0] for step in steps] == [
            "preProcessing",
            "orchestration",
            "orchestration",
            "orchestration",
        ]
