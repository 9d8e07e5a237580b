"""Bedrock Agents runtime: agent runs as span trees, knowledge bases as documents."""

from __future__ import annotations

import base64
import datetime
import gc
import json
import pathlib
import time
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import EventStreamError
from botocore.stub import Stubber
from mlflow.entities import SpanStatusCode, SpanType

import bedrock_trace
from bedrock_trace.testing import (
    HttpStub,
    capture_traces,
    event_message,
    exception_message,
    expect_internal_errors,
    flush,
)

from . import agent_events as E
from .agent_tree import FULL_RUN_TREE, check_full_run, picture, tree
from .conftest import ONE_ATTEMPT, make_session
from .faults import FAULTS, FaultyTracerProvider

AGENT_KWARGS = {
    "agentId": E.AGENT_ID,
    "agentAliasId": E.ALIAS_ID,
    "sessionId": E.SESSION_ID,
    "inputText": "Can I return order A-1001?",
    "enableTrace": True,
}


@pytest.fixture
def agent_client(session):  # type: ignore[no-untyped-def]
    return session.client("bedrock-agent-runtime", config=ONE_ATTEMPT)


@pytest.fixture
def agent_http(agent_client):  # type: ignore[no-untyped-def]
    with HttpStub(agent_client) as stub:
        yield stub
        assert stub.pending() == 0


def settle() -> None:
    gc.collect()
    flush()


def invoke(client: Any, http: HttpStub, messages: list[bytes], **kwargs: Any) -> Any:
    http.add_stream(messages, headers=E.EVENTSTREAM)
    return client.invoke_agent(**{**AGENT_KWARGS, **kwargs})


# --- the samples are what the service sends ------------------------------------------------


def _shape_mismatches(value: Any, shape: Any, path: str) -> list[str]:
    if shape.type_name == "structure" and not shape.metadata.get("document"):
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        problems = []
        for key, item in value.items():
            if key not in shape.members:
                problems.append(f"{path}.{key}: not in {shape.name}")
            else:
                problems += _shape_mismatches(item, shape.members[key], f"{path}.{key}")
        return problems
    if shape.type_name == "list":
        return [
            p
            for i, v in enumerate(value)
            for p in _shape_mismatches(v, shape.member, f"{path}[{i}]")
        ]
    if shape.type_name == "map":
        return [
            p for k, v in value.items() for p in _shape_mismatches(v, shape.value, f"{path}.{k}")
        ]
    return []


def _decode(message: bytes) -> tuple[str, Any]:
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(message)
    (decoded,) = list(buffer)
    return decoded.headers[":event-type"], json.loads(decoded.payload)


class TestSamples:
    """The sample events use the service model's own field names (so botocore parses them)."""

    def test_every_key_of_every_sample_is_in_the_model(self):
        """Each key of each sample event exists in botocore's bedrock-agent-runtime model."""
        model = botocore.session.get_session().get_service_model("bedrock-agent-runtime")
        streams = {
            "agent": model.shape_for("ResponseStream"),
            "flow": model.shape_for("FlowResponseStream"),
            "rag": model.shape_for("RetrieveAndGenerateStreamResponseOutput"),
        }
        samples = [("agent", m) for m in E.full_run() + FAILURE_RUN + RETURN_CONTROL_RUN]
        samples += [("flow", m) for m in FLOW_RUN] + [("rag", m) for m in RAG_STREAM]
        problems = []
        for stream, message in samples:
            event_type, payload = _decode(message)
            shape = streams[stream].members[event_type]
            problems += _shape_mismatches(payload, shape, event_type)
        if not E.NODE_DEPENDENCY_TRACE:  # a member of newer botocore models only
            problems = [p for p in problems if "nodeDependencyTrace" not in p]
        assert problems == []


# --- agent runs ----------------------------------------------------------------------------


class TestAgentRun:
    """invoke_agent with enableTrace: the agent's own trace as a tree of spans."""

    def test_full_run_tree(self, capture, agent_client, agent_http):
        """Steps, model invocations, tool, retriever, collaborator and guardrail, nested."""
        response = invoke(agent_client, agent_http, E.full_run())
        events = list(response["completion"])
        assert len(events) == len(E.full_run())
        (trace,) = capture.traces
        check_full_run(capture.spans)
        assert trace.info.trace_metadata["mlflow.trace.session"] == E.SESSION_ID

    def test_docs_picture_is_the_real_tree(self, capture, agent_client, agent_http):
        """docs/agents.md draws the tree a traced full run really makes."""
        list(invoke(agent_client, agent_http, E.full_run())["completion"])
        page = (pathlib.Path(__file__).parent.parent / "docs" / "agents.md").read_text()
        block = page.split("<!-- agents:tree:begin -->")[1].split("<!-- agents:tree:end -->")[0]
        drawn = block.strip().removeprefix("```text").removesuffix("```").strip()
        assert drawn == picture(capture.spans)

    def test_events_reach_the_caller_unchanged(self, capture, agent_client):
        """The caller gets exactly the events an untraced client gets."""
        bedrock_trace.unregister(agent_client)
        with HttpStub(agent_client) as http:
            plain = list(invoke(agent_client, http, E.full_run())["completion"])
        bedrock_trace.register(agent_client)
        with HttpStub(agent_client) as http:
            traced = list(invoke(agent_client, http, E.full_run())["completion"])
        assert traced == plain
        assert len(capture.traces) == 1

    def test_session_metadata_only_when_root(self, capture, agent_client, agent_http):
        """Under the caller's own span, the session id stays on the invoke span only."""
        import mlflow

        with mlflow.start_span("app"):
            list(invoke(agent_client, agent_http, E.full_run())["completion"])
        (trace,) = capture.traces
        assert "mlflow.trace.session" not in trace.info.trace_metadata
        (invoke_span,) = [s for s in capture.spans if s.name == "BedrockAgentRuntime.invoke_agent"]
        assert invoke_span.attributes["bedrock_trace.session_id"] == E.SESSION_ID
        assert invoke_span.parent_id is not None

    def test_child_times_come_from_event_times(self, capture, agent_client, agent_http):
        """A model invocation lasts from its input's eventTime to its output's."""
        # Event times after the call starts (even on a slow machine) and before they are read.
        base = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
        messages = [
            E._trace(
                "orchestrationTrace",
                "modelInvocationInput",
                E.model_input("t-0", "p"),
                ms=0,
                base=base,
            ),
            E._trace(
                "orchestrationTrace",
                "modelInvocationOutput",
                E.model_output("t-0", "r", 5, 1),
                ms=50,
                base=base,
            ),
        ]
        stream = invoke(agent_client, agent_http, messages)["completion"]
        ahead = (base - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        assert ahead > 0, "the call took longer than a second to start: the base is too early"
        time.sleep(ahead + 0.1)  # both event times are now in the past
        list(stream)
        (llm,) = [s for s in capture.spans if s.span_type == "LLM"]
        assert llm.end_time_ns - llm.start_time_ns == 50_000_000

    def test_times_outside_the_call_are_clamped(self, capture, agent_client, agent_http):
        """Event times from a skewed clock never put a child outside its parent."""
        list(invoke(agent_client, agent_http, E.full_run(E.BASE_TIME))["completion"])
        future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
        list(invoke(agent_client, agent_http, E.full_run(future))["completion"])
        for trace in capture.traces:
            check_full_run(trace.data.spans)

    def test_a_collaborator_starts_inside_its_step(self, capture, agent_client, agent_http):
        """A step opened at one event's time, then a collaborator called in it with an earlier
        eventTime (a skewed clock): the collaborator's span starts when its step does, not
        before. Hypothesis found this: the time was kept inside the agent's span only."""
        future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
        step = {"traceId": "t-0", "text": "I will ask the refunds agent."}
        call = {
            "traceId": "t-0",
            "invocationType": "AGENT_COLLABORATOR",
            "agentCollaboratorInvocationInput": {
                "agentCollaboratorName": "refunds",
                "agentCollaboratorAliasArn": E.COLLABORATOR_ARN,
                "input": {"type": "TEXT", "text": "Refundable?"},
            },
        }
        messages = [
            E._trace("orchestrationTrace", "rationale", step, ms=0, base=future),
            E._trace("orchestrationTrace", "invocationInput", call, ms=0),  # 2020
        ]
        list(invoke(agent_client, agent_http, messages)["completion"])
        by_id = {span.span_id: span for span in capture.spans}
        (collaborator,) = [s for s in capture.spans if s.name == "refunds"]
        assert by_id[collaborator.parent_id].name == "orchestration"
        for span in capture.spans:
            if (parent := by_id.get(span.parent_id)) is not None:
                assert parent.start_time_ns <= span.start_time_ns <= span.end_time_ns
                assert span.end_time_ns <= parent.end_time_ns

    def test_failure_trace_ends_its_step_with_error(self, capture, agent_client, agent_http):
        """failureTrace: the step is ERROR with the reason and code; the call itself is OK."""
        list(invoke(agent_client, agent_http, FAILURE_RUN)["completion"])
        (step,) = [s for s in capture.spans if s.name == "orchestration"]
        assert step.status.status_code == SpanStatusCode.ERROR
        assert step.status.description == "Lambda function returned an error"
        assert step.attributes["bedrock_trace.failure_code"] == 424
        (tool,) = [s for s in capture.spans if s.span_type == "TOOL"]
        assert tool.attributes["bedrock_trace.incomplete"] is True
        (root,) = [s for s in capture.spans if s.parent_id is None]
        assert root.status.status_code == SpanStatusCode.OK

    def test_return_control_in_outputs(self, capture, agent_client, agent_http):
        """returnControl: the span ends OK with the requested invocation in its outputs."""
        list(invoke(agent_client, agent_http, RETURN_CONTROL_RUN)["completion"])
        (root,) = [s for s in capture.spans if s.parent_id is None]
        assert root.status.status_code == SpanStatusCode.OK
        assert root.outputs["returnControl"]["invocationId"] == "inv-1"
        assert root.outputs["completion"] == ""

    def test_files_are_placeholders(self, capture, agent_client, agent_http):
        """Files the agent returns are recorded as placeholders, never raw bytes."""
        png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
        messages = [E.chunk("Here is the chart."), FILES_EVENT(png)]
        list(invoke(agent_client, agent_http, messages)["completion"])
        (root,) = capture.spans
        (file,) = root.outputs["files"]
        assert file["name"] == "chart.png"
        assert file["bytes"].startswith("[binary image/png, 108 bytes")

    def test_code_interpreter_is_a_tool(self, capture, agent_client, agent_http):
        """codeInterpreterInvocationInput / output: a TOOL span with the code and its result."""
        list(invoke(agent_client, agent_http, CODE_RUN)["completion"])
        (tool,) = [s for s in capture.spans if s.span_type == "TOOL"]
        assert tool.name == "codeInterpreter"
        assert tool.inputs["code"] == "print(6 * 7)"
        assert tool.outputs["executionOutput"] == "42"

    def test_reasoning_content_on_the_llm_span(self, capture, agent_client, agent_http):
        """reasoningContent: the reasoning text in the LLM outputs; redacted reasoning (bytes)
        as a placeholder."""
        redacted = base64.b64encode(b"\x00secret-reasoning").decode("ascii")
        messages = [
            E._trace("orchestrationTrace", "modelInvocationInput", E.model_input("z-0", "p"), ms=0),
            E._trace(
                "orchestrationTrace",
                "modelInvocationOutput",
                {
                    **E.model_output("z-0", "r", 5, 1),
                    "reasoningContent": {
                        "reasoningText": {"text": "Let me think.", "signature": "s"}
                    },
                },
                ms=1,
            ),
            E._trace("orchestrationTrace", "modelInvocationInput", E.model_input("z-1", "p"), ms=2),
            E._trace(
                "orchestrationTrace",
                "modelInvocationOutput",
                {
                    **E.model_output("z-1", "r", 5, 1),
                    "reasoningContent": {"redactedContent": redacted},
                },
                ms=3,
            ),
        ]
        list(invoke(agent_client, agent_http, messages)["completion"])
        first, second = sorted(
            (s for s in capture.spans if s.span_type == "LLM"), key=lambda s: s.start_time_ns
        )
        assert first.outputs["reasoningContent"]["reasoningText"]["text"] == "Let me think."
        placeholder = second.outputs["reasoningContent"]["redactedContent"]
        assert placeholder.startswith("[binary ")
        assert "secret" not in json.dumps([s.outputs for s in capture.spans], default=str)

    def test_inline_agent(self, capture, agent_client, agent_http):
        """invoke_inline_agent: an AGENT span with the same tree (trace parts lack agent ids)."""
        agent_http.add_stream(E.full_run(), headers=E.EVENTSTREAM)
        response = agent_client.invoke_inline_agent(
            sessionId=E.SESSION_ID,
            foundationModel=E.MODEL,
            instruction="You are a helpful returns assistant for an online shop.",
            inputText="Can I return order A-1001?",
            enableTrace=True,
        )
        list(response["completion"])
        spans = capture.spans
        assert tree(spans)[0] == "BedrockAgentRuntime.invoke_inline_agent"
        assert tree(spans)[1:] == FULL_RUN_TREE[1:]

    def test_trace_events_become_short_span_events(self, capture, agent_client, agent_http):
        """Trace events are span events naming their part; their content is in child spans."""
        list(invoke(agent_client, agent_http, E.full_run())["completion"])
        (root,) = [s for s in capture.spans if s.parent_id is None]
        names = [event.name for event in root.events]
        assert names.count("chunk") == 2
        first_trace = next(e for e in root.events if e.name == "trace")
        assert json.loads(first_trace.attributes["json"]) == {
            "part": "guardrailTrace",
            "traceId": f"{E.RUN}-guardrail-pre-0",
        }


class TestAgentStreamEnds:
    """Every ending of an agent stream ends every span exactly once, children first."""

    def _check_all_ended(self, capture, complete: bool) -> Any:
        settle()
        assert capture.open_traces() == 0
        spans = capture.spans
        (root,) = [s for s in spans if s.parent_id is None]
        by_id = {s.span_id: s for s in spans}
        for span in spans:
            parent = by_id.get(span.parent_id)
            if parent is not None:
                assert span.end_time_ns <= parent.end_time_ns
        assert root.attributes.get("bedrock_trace.incomplete", False) is not complete
        return root

    def test_exhausted(self, capture, agent_client, agent_http):
        list(invoke(agent_client, agent_http, E.full_run())["completion"])
        self._check_all_ended(capture, complete=True)

    def test_break_then_iterator_collected(self, capture, agent_client, agent_http):
        """Broken off half way: steps and the collaborator still open end as incomplete."""
        stream = invoke(agent_client, agent_http, E.full_run())["completion"]
        for index, _event in enumerate(stream):
            if index == 13:  # inside the collaborator, its model invocation under way
                break
        del stream, _event
        root = self._check_all_ended(capture, complete=False)
        (collaborator,) = [s for s in capture.spans if s.name == "refunds"]
        assert collaborator.attributes["bedrock_trace.incomplete"] is True
        assert root.attributes["mlflow.chat.tokenUsage"]["input_tokens"] == 120 + 900 + 1100

    def test_close_mid_stream(self, capture, agent_client, agent_http):
        stream = invoke(agent_client, agent_http, E.full_run())["completion"]
        iterator = iter(stream)
        for _ in range(4):
            next(iterator)
        stream.close()
        self._check_all_ended(capture, complete=False)
        pre, orchestration = sorted(
            (s for s in capture.spans if s.span_type == "LLM"), key=lambda s: s.start_time_ns
        )
        (step,) = [s for s in capture.spans if s.name == "orchestration"]
        assert step.attributes["bedrock_trace.incomplete"] is True
        assert "bedrock_trace.incomplete" not in pre.attributes
        assert orchestration.attributes["bedrock_trace.incomplete"] is True  # no output yet

    def test_dropped_unread(self, capture, agent_client, agent_http):
        invoke(agent_client, agent_http, E.full_run())
        self._check_all_ended(capture, complete=False)
        assert len(capture.spans) == 1

    def test_context_manager(self, capture, agent_client, agent_http):
        with invoke(agent_client, agent_http, E.full_run())["completion"] as stream:
            for index, _event in enumerate(stream):
                if index == 8:
                    break
        self._check_all_ended(capture, complete=False)

    def test_error_mid_stream(self, capture, agent_client, agent_http):
        """An exception event: the caller gets botocore's error; every span ends, root ERROR."""
        messages = [*E.full_run()[:10], exception_message("throttlingException", "Rate exceeded")]
        stream = invoke(agent_client, agent_http, messages)["completion"]
        with pytest.raises(EventStreamError, match="Rate exceeded"):
            list(stream)
        root = self._check_all_ended(capture, complete=False)
        assert root.status.status_code == SpanStatusCode.ERROR
        assert root.attributes["bedrock_trace.error_code"] == "throttlingException"
        assert {s.status.status_code for s in capture.spans if s is not root} == {SpanStatusCode.OK}


class TestAgentStreamCutAnywhere:
    """Cut at every event: whatever was open ends, once, inside its parent."""

    @pytest.mark.parametrize("cut", range(len(E.full_run())))
    def test_cut(self, capture, agent_client, agent_http, cut):
        stream = invoke(agent_client, agent_http, E.full_run())["completion"]
        iterator = iter(stream)
        for _ in range(cut + 1):
            next(iterator)
        if cut % 2:
            stream.close()
        else:
            del iterator, stream  # dropped mid-way: ended through the reaper
        settle()
        assert capture.open_traces() == 0
        spans = capture.spans
        by_id = {s.span_id: s for s in spans}
        for span in spans:
            parent = by_id.get(span.parent_id)
            if parent is not None:
                assert parent.start_time_ns <= span.start_time_ns <= span.end_time_ns
                assert span.end_time_ns <= parent.end_time_ns
        assert len({s.span_id for s in spans}) == len(spans)


class TestOddTraceEvents:
    """Trace events this version does not know, or malformed ones: nothing lost, nothing broken."""

    def test_odd_events(self, capture, agent_client, agent_http):
        messages = [
            event_message("trace", {"sessionId": "s"}),
            E._trace("orchestrationTrace", "modelInvocationOutput", {"traceId": "x-0"}, ms=0),
            E._trace(
                "orchestrationTrace",
                "observation",
                {"traceId": "x-0", "type": "KNOWLEDGE_BASE", "knowledgeBaseLookupOutput": {}},
                ms=1,
            ),
            E._trace(
                "orchestrationTrace",
                "observation",
                {
                    "traceId": "x-0",
                    "type": "AGENT_COLLABORATOR",
                    "agentCollaboratorInvocationOutput": {"agentCollaboratorName": "nobody"},
                },
                ms=2,
            ),
            E._trace(
                "orchestrationTrace",
                "modelInvocationInput",
                E.model_input("y-0", "p"),
                ms=3,
                chain=(E.SUPERVISOR_ARN, "arn:unknown", "arn:deeper"),
            ),
            E._trace("failureTrace", None, {"failureReason": "boom"}, ms=4),
            event_message("futureEvent", {"x": 1}),
            E.chunk("done"),
        ]
        list(invoke(agent_client, agent_http, messages)["completion"])
        settle()
        assert capture.open_traces() == 0
        (root,) = [s for s in capture.spans if s.parent_id is None]
        assert root.outputs["completion"] == "done"
        (errored,) = [s for s in capture.spans if s.status.status_code == SpanStatusCode.ERROR]
        assert errored.status.description == "boom"


class TestAgentAdversarial:
    """Threads, configuration changes mid-stream, bytes that are not UTF-8."""

    def test_threads_each_get_their_own_tree(self, capture, session):
        """Four threads, one client, four runs at once: four complete, separate trees."""
        import threading

        client = session.client("bedrock-agent-runtime", config=ONE_ATTEMPT)
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def one() -> None:
            try:
                barrier.wait()
                list(client.invoke_agent(**AGENT_KWARGS)["completion"])
            except BaseException as error:
                errors.append(error)

        with HttpStub(client) as http:
            for _ in range(4):
                http.add_stream(E.full_run(), headers=E.EVENTSTREAM)
            threads = [threading.Thread(target=one) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert errors == []
        assert len(capture.traces) == 4
        for trace in capture.traces:
            check_full_run(trace.data.spans)

    def test_unregister_mid_stream_still_ends_everything(self, capture, session):
        """unregister while a stream is half read: its spans still end, children first."""
        client = session.client("bedrock-agent-runtime", config=ONE_ATTEMPT)
        with HttpStub(client) as http:
            stream = invoke(client, http, E.full_run())["completion"]
            iterator = iter(stream)
            for _ in range(13):
                next(iterator)
            bedrock_trace.unregister(session)
            rest = list(iterator)
        assert len(rest) == len(E.full_run()) - 13
        settle()
        assert capture.open_traces() == 0
        assert tree(capture.spans) == FULL_RUN_TREE

    def test_chunk_bytes_not_utf8(self, capture, agent_client, agent_http):
        """Answer bytes that are not UTF-8 reach the caller unchanged; the text is recorded
        with replacement characters."""
        raw = "café".encode("latin-1")
        message = event_message("chunk", {"bytes": base64.b64encode(raw).decode("ascii")})
        events = list(invoke(agent_client, agent_http, [message])["completion"])
        assert events[0]["chunk"]["bytes"] == raw
        (root,) = capture.spans
        assert root.outputs["completion"] == "caf\ufffd"


class TestAgentMlflowFailures:
    """MLflow failing on any span of the tree: the caller's stream behaves as untraced."""

    @pytest.mark.parametrize("fault", FAULTS)
    def test_agent_run_under_fault(self, fault):
        session = make_session()
        untraced = session.client("bedrock-agent-runtime", config=ONE_ATTEMPT)
        bedrock_trace.register(session)
        traced = session.client("bedrock-agent-runtime", config=ONE_ATTEMPT)
        provider = FaultyTracerProvider(fault, prefixes=("",))
        results = []
        with capture_traces(provider) as capture, expect_internal_errors():
            for client in (untraced, traced):
                with HttpStub(client) as http:
                    results.append(list(invoke(client, http, E.full_run())["completion"]))
            settle()
            assert capture.open_traces() == 0
        bedrock_trace.unregister(session)
        assert results[0] == results[1]
        assert provider.fired > 0


class TestAgentContentControls:
    """capture_content, redact, max_payload_chars and include_binary govern child spans too."""

    def _run(self, config: bedrock_trace.TraceConfig) -> list[Any]:
        session = make_session()
        bedrock_trace.register(session, config=config)
        client = session.client("bedrock-agent-runtime", config=ONE_ATTEMPT)
        with HttpStub(client) as http:
            list(invoke(client, http, E.full_run())["completion"])
        bedrock_trace.unregister(session)
        settle()
        return []

    def test_capture_content_off(self, capture):
        """No prompt, passage, rationale or answer text anywhere; the tree and usage stay."""
        self._run(bedrock_trace.TraceConfig(capture_content=False))
        spans = capture.spans
        assert tree(spans) == FULL_RUN_TREE
        dumped = json.dumps(
            [(s.inputs, s.outputs, s.attributes, [e.attributes for e in s.events]) for s in spans],
            default=str,
        )
        for secret in (
            "Returns are accepted",
            "Answer the user",
            "search the policies",
            "within 30 days",
            "A-1001",
            "refundable",
        ):
            assert secret not in dumped
        (root,) = [s for s in spans if s.parent_id is None]
        assert (
            root.attributes["mlflow.chat.tokenUsage"]["output_tokens"]
            == E.FULL_RUN_USAGE["output_tokens"]
        )

    def test_redact_applies_to_children(self, capture):
        """The redact hook sees every child payload, and what it returns is recorded."""
        kinds: set[str] = set()

        def redact(kind: str, value: Any) -> Any:
            kinds.add(kind)
            return json.loads(json.dumps(value).replace("A-1001", "[order]"))

        self._run(bedrock_trace.TraceConfig(redact=redact))
        dumped = json.dumps([(s.inputs, s.outputs) for s in capture.spans], default=str)
        assert "A-1001" not in dumped
        assert "[order]" in dumped
        assert {"inputs", "outputs"} <= kinds

    def test_max_payload_chars_caps_children(self, capture):
        """A child's outputs bigger than the cap are cut with the truncation marker."""
        self._run(bedrock_trace.TraceConfig(max_payload_chars=60))
        (retriever,) = [s for s in capture.spans if s.span_type == "RETRIEVER"]
        assert "bedrock_trace.truncated" in retriever.outputs
        assert retriever.attributes["bedrock_trace.truncated"] == ["outputs"]


# --- knowledge bases, rerank, flows --------------------------------------------------------


class TestKnowledgeBases:
    """retrieve, retrieve_and_generate(_stream) and rerank."""

    def test_retrieve_documents(self, capture, agent_client, agent_http):
        """retrieve: a RETRIEVER span whose outputs are MLflow Documents."""
        agent_http.add(
            {
                "retrievalResults": [
                    {**E.REFERENCE, "score": 0.87},
                    {**E.REFERENCE_2, "score": 0.5},
                    ROW_RESULT,
                ]
            }
        )
        agent_client.retrieve(knowledgeBaseId=E.KB_ID, retrievalQuery={"text": "return policy"})
        (span,) = capture.spans
        assert span.name == "BedrockAgentRuntime.retrieve"
        assert span.span_type == SpanType.RETRIEVER
        assert span.inputs == {
            "knowledgeBaseId": E.KB_ID,
            "retrievalQuery": {"text": "return policy"},
        }
        first, second, row = span.outputs
        assert first == {
            "page_content": "Returns are accepted within 30 days of delivery.",
            "metadata": {
                "x-amz-bedrock-kb-source-uri": "s3://policies/returns.pdf",
                "x-amz-bedrock-kb-chunk-id": "1%3A0%3Aabc123",
                "doc_uri": "s3://policies/returns.pdf",
                "location_type": "S3",
                "score": 0.87,
            },
            "id": "1%3A0%3Aabc123",
        }
        assert second["metadata"]["doc_uri"] == "https://example.com/refunds"
        assert row["page_content"] == "order_id: A-1001\nstatus: delivered"
        assert row["metadata"]["doc_uri"] == "SELECT * FROM orders"
        assert span.attributes["bedrock_trace.knowledge_base_id"] == E.KB_ID

    def test_image_content_is_a_placeholder(self, capture, agent_client, agent_http):
        """byteContent (a base64 data URI) is never recorded raw."""
        data = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x01" * 400).decode()
        image = {
            "content": {"type": "IMAGE", "byteContent": f"data:image/png;base64,{data}"},
            "location": {"type": "S3", "s3Location": {"uri": "s3://b/i.png"}},
        }
        agent_http.add({"retrievalResults": [image]})
        agent_client.retrieve(knowledgeBaseId=E.KB_ID, retrievalQuery={"text": "chart"})
        (span,) = capture.spans
        assert span.outputs[0]["page_content"].startswith("[binary image/png")

    def test_retrieve_and_generate(self, capture, agent_client, agent_http):
        """A CHAIN span with the answer, and a RETRIEVER child with each cited passage once."""
        agent_http.add(
            {
                "sessionId": E.SESSION_ID,
                "output": {"text": "Within 30 days."},
                "citations": [
                    E.CITATION,
                    E.CITATION,
                    {**E.CITATION, "retrievedReferences": [E.REFERENCE_2]},
                ],
            }
        )
        agent_client.retrieve_and_generate(
            input={"text": "return policy?"},
            retrieveAndGenerateConfiguration={
                "type": "KNOWLEDGE_BASE",
                "knowledgeBaseConfiguration": {"knowledgeBaseId": E.KB_ID, "modelArn": E.MODEL},
            },
        )
        chain, retriever = sorted(capture.spans, key=lambda s: s.parent_id is not None)
        assert chain.name == "BedrockAgentRuntime.retrieve_and_generate"
        assert chain.span_type == SpanType.CHAIN
        assert chain.outputs["output"] == {"text": "Within 30 days."}
        assert retriever.parent_id == chain.span_id
        assert retriever.span_type == SpanType.RETRIEVER
        assert [d["metadata"]["doc_uri"] for d in retriever.outputs] == [
            "s3://policies/returns.pdf",
            "https://example.com/refunds",
        ]

    def test_retrieve_and_generate_stream(self, capture, agent_client, agent_http):
        """The stream's text joined, citations kept, cited passages once in a RETRIEVER child."""
        agent_http.add_stream(
            RAG_STREAM, headers={"x-amzn-bedrock-knowledge-base-session-id": E.SESSION_ID}
        )
        response = agent_client.retrieve_and_generate_stream(
            input={"text": "return policy?"},
            retrieveAndGenerateConfiguration={
                "type": "KNOWLEDGE_BASE",
                "knowledgeBaseConfiguration": {"knowledgeBaseId": E.KB_ID, "modelArn": E.MODEL},
            },
        )
        list(response["stream"])
        chain, retriever = sorted(capture.spans, key=lambda s: s.parent_id is not None)
        assert chain.name == "BedrockAgentRuntime.retrieve_and_generate_stream"
        assert chain.outputs["output"] == {"text": "Returns are accepted within 30 days."}
        assert len(chain.outputs["citations"]) == 1
        assert chain.outputs["guardrailAction"] == "NONE"
        assert len(retriever.outputs) == 1
        assert (
            chain.start_time_ns
            <= retriever.start_time_ns
            <= retriever.end_time_ns
            <= chain.end_time_ns
        )

    def test_rerank(self, capture, agent_client, agent_http):
        """rerank: a RERANKER span with the ranked results and their scores."""
        results = [{"index": 1, "relevanceScore": 0.9}, {"index": 0, "relevanceScore": 0.2}]
        agent_http.add({"results": results})
        agent_client.rerank(
            queries=[{"type": "TEXT", "textQuery": {"text": "refunds"}}],
            sources=[
                {
                    "type": "INLINE",
                    "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": t}},
                }
                for t in ("shipping", "refunds")
            ],
            rerankingConfiguration={
                "type": "BEDROCK_RERANKING_MODEL",
                "bedrockRerankingConfiguration": {
                    "modelConfiguration": {
                        "modelArn": "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"
                    }
                },
            },
        )
        (span,) = capture.spans
        assert span.span_type == SpanType.RERANKER
        assert span.outputs == {"results": results}


# The agent's own trace inside the flow's agent node (FlowTrace.nodeDependencyTrace).
AGENT_IN_NODE = [("orchestration", "CHAIN", [(E.MODEL, "LLM", [])])]


class TestFlows:
    """invoke_flow: a WORKFLOW span with one span per node."""

    def test_flow_nodes(self, capture, agent_client, agent_http):
        """One CHAIN span per node; an agent's trace inside a node nests under it."""
        agent_http.add_stream(FLOW_RUN)
        response = agent_client.invoke_flow(
            flowIdentifier="FLOW123456",
            flowAliasIdentifier="FALIAS1234",
            inputs=[
                {
                    "nodeName": "FlowInputNode",
                    "nodeOutputName": "document",
                    "content": {"document": "hi"},
                }
            ],
            enableTrace=True,
        )
        list(response["responseStream"])
        spans = capture.spans
        assert tree(spans) == (
            "BedrockAgentRuntime.invoke_flow",
            SpanType.WORKFLOW,
            [
                ("FlowInputNode", "CHAIN", []),
                ("Agent", "CHAIN", AGENT_IN_NODE if E.NODE_DEPENDENCY_TRACE else []),
                ("FlowOutputNode", "CHAIN", []),
            ],
        )
        (root,) = [s for s in spans if s.parent_id is None]
        assert root.outputs["outputs"][0]["content"] == {"document": "Yes."}
        assert root.outputs["completionReason"] == "SUCCESS"
        (agent_node,) = [s for s in spans if s.name == "Agent"]
        assert agent_node.inputs == {"agentInputText": "hi"}
        assert agent_node.outputs == {"agentResponse": "Yes."}
        if E.NODE_DEPENDENCY_TRACE:  # the usage comes from the agent's trace inside the node
            assert root.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 6


class TestRegistration:
    """One registration covers both services; nothing else on the agent service is traced."""

    def test_session_covers_both_services(self, capture, session):
        runtime = session.client("bedrock-runtime", config=ONE_ATTEMPT)
        agents = session.client("bedrock-agent-runtime", config=ONE_ATTEMPT)
        with Stubber(runtime) as runtime_stub, Stubber(agents) as agent_stub:
            from bedrock_trace.testing import converse_response

            runtime_stub.add_response("converse", converse_response())
            agent_stub.add_response("retrieve", {"retrievalResults": []})
            runtime.converse(
                modelId=E.MODEL, messages=[{"role": "user", "content": [{"text": "hi"}]}]
            )
            agents.retrieve(knowledgeBaseId=E.KB_ID, retrievalQuery={"text": "q"})
        assert sorted(s.name for s in capture.spans) == [
            "BedrockAgentRuntime.retrieve",
            "BedrockRuntime.converse",
        ]

    def test_registering_twice_one_span(self, capture, session):
        bedrock_trace.register(session)
        agents = session.client("bedrock-agent-runtime", config=ONE_ATTEMPT)
        bedrock_trace.register(agents)
        with Stubber(agents) as stub:
            stub.add_response("retrieve", {"retrievalResults": []})
            agents.retrieve(knowledgeBaseId=E.KB_ID, retrievalQuery={"text": "q"})
        assert len(capture.spans) == 1

    def test_unregister_covers_existing_agent_clients(self, capture, session):
        agents = session.client("bedrock-agent-runtime", config=ONE_ATTEMPT)
        bedrock_trace.unregister(session)
        with Stubber(agents) as stub:
            stub.add_response("retrieve", {"retrievalResults": []})
            agents.retrieve(knowledgeBaseId=E.KB_ID, retrievalQuery={"text": "q"})
        assert capture.spans == []

    @pytest.mark.parametrize(
        ("operation", "params", "response"),
        [
            (
                "get_session",
                {"sessionIdentifier": E.SESSION_ID},
                {
                    "sessionId": E.SESSION_ID,
                    "sessionArn": "arn:aws:bedrock:us-east-1:123456789012:session/x",
                    "sessionStatus": "ACTIVE",
                    "createdAt": datetime.datetime(2020, 1, 1),
                    "lastUpdatedAt": datetime.datetime(2020, 1, 1),
                },
            ),
            ("list_sessions", {}, {"sessionSummaries": []}),
            (
                "get_agent_memory",
                {
                    "agentId": E.AGENT_ID,
                    "agentAliasId": E.ALIAS_ID,
                    "memoryType": "SESSION_SUMMARY",
                    "memoryId": "memory-1",
                },
                {"memoryContents": []},
            ),
            (
                "list_invocation_steps",
                {"sessionIdentifier": E.SESSION_ID},
                {"invocationStepSummaries": []},
            ),
        ],
        ids=["get_session", "list_sessions", "get_agent_memory", "list_invocation_steps"],
    )
    def test_other_operations_make_no_span(
        self, capture, agent_client, operation, params, response
    ):
        with Stubber(agent_client) as stub:
            stub.add_response(operation, response, params)
            getattr(agent_client, operation)(**params)
        assert capture.spans == []

    def test_http_error(self, capture, agent_client, agent_http):
        """An HTTP error: one ERROR span with the error code; the caller gets botocore's error."""
        agent_http.add(
            {"message": "no such agent"},
            status=404,
            headers={"x-amzn-errortype": "ResourceNotFoundException:"},
        )
        with pytest.raises(agent_client.exceptions.ResourceNotFoundException):
            agent_client.invoke_agent(**AGENT_KWARGS)
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.ERROR
        assert span.attributes["bedrock_trace.error_code"] == "ResourceNotFoundException"


# --- samples used above --------------------------------------------------------------------

ROW_RESULT = {
    "content": {
        "type": "ROW",
        "row": [
            {"columnName": "order_id", "columnValue": "A-1001", "type": "STRING"},
            {"columnName": "status", "columnValue": "delivered", "type": "STRING"},
        ],
    },
    "location": {"type": "SQL", "sqlLocation": {"query": "SELECT * FROM orders"}},
}

FAILURE_RUN = [
    E._trace("orchestrationTrace", "modelInvocationInput", E.model_input("f-0", "p"), ms=0),
    E._trace(
        "orchestrationTrace", "modelInvocationOutput", E.model_output("f-0", "r", 5, 1), ms=10
    ),
    E._trace(
        "orchestrationTrace",
        "invocationInput",
        {
            "traceId": "f-0",
            "invocationType": "ACTION_GROUP",
            "actionGroupInvocationInput": {"actionGroupName": "orders", "function": "get_order"},
        },
        ms=20,
    ),
    E._trace(
        "failureTrace",
        None,
        {
            "traceId": "f-0",
            "failureReason": "Lambda function returned an error",
            "failureCode": 424,
        },
        ms=30,
    ),
]

RETURN_CONTROL_RUN = [
    E._trace("orchestrationTrace", "modelInvocationInput", E.model_input("r-0", "p"), ms=0),
    E._trace(
        "orchestrationTrace", "modelInvocationOutput", E.model_output("r-0", "r", 5, 1), ms=10
    ),
    event_message(
        "returnControl",
        {
            "invocationId": "inv-1",
            "invocationInputs": [
                {
                    "functionInvocationInput": {
                        "actionGroup": "orders",
                        "function": "refund",
                        "actionInvocationType": "RESULT",
                        "parameters": [{"name": "order_id", "type": "string", "value": "A-1001"}],
                    }
                }
            ],
        },
    ),
]

CODE_RUN = [
    E._trace(
        "orchestrationTrace",
        "invocationInput",
        {
            "traceId": "c-0",
            "invocationType": "ACTION_GROUP_CODE_INTERPRETER",
            "codeInterpreterInvocationInput": {"code": "print(6 * 7)", "files": []},
        },
        ms=0,
    ),
    E._trace(
        "orchestrationTrace",
        "observation",
        {
            "traceId": "c-0",
            "type": "ACTION_GROUP_CODE_INTERPRETER",
            "codeInterpreterInvocationOutput": {"executionOutput": "42", "executionTimeout": False},
        },
        ms=100,
    ),
]


def FILES_EVENT(data: bytes) -> bytes:
    encoded = base64.b64encode(data).decode("ascii")
    return event_message(
        "files", {"files": [{"name": "chart.png", "type": "image/png", "bytes": encoded}]}
    )


RAG_STREAM = [
    event_message("output", {"text": "Returns are accepted "}),
    event_message("output", {"text": "within 30 days."}),
    event_message("citation", {"citation": E.CITATION, **E.CITATION}),
    event_message("guardrail", {"action": "NONE"}),
]

_FLOW_TIME = "2020-01-01T12:00:00.000Z"
FLOW_RUN = [
    event_message(
        "flowTraceEvent",
        {
            "trace": {
                "nodeInputTrace": {
                    "nodeName": "FlowInputNode",
                    "timestamp": _FLOW_TIME,
                    "fields": [{"nodeInputName": "document", "content": {"document": "hi"}}],
                }
            }
        },
    ),
    event_message(
        "flowTraceEvent",
        {
            "trace": {
                "nodeOutputTrace": {
                    "nodeName": "FlowInputNode",
                    "timestamp": _FLOW_TIME,
                    "fields": [{"nodeOutputName": "document", "content": {"document": "hi"}}],
                }
            }
        },
    ),
    event_message(
        "flowTraceEvent",
        {
            "trace": {
                "nodeInputTrace": {
                    "nodeName": "Agent",
                    "timestamp": _FLOW_TIME,
                    "fields": [{"nodeInputName": "agentInputText", "content": {"document": "hi"}}],
                }
            }
        },
    ),
    event_message(
        "flowTraceEvent",
        {
            "trace": {
                "nodeDependencyTrace": {
                    "nodeName": "Agent",
                    "timestamp": _FLOW_TIME,
                    "traceElements": {
                        "agentTraces": [
                            {
                                "sessionId": "s",
                                "eventTime": _FLOW_TIME,
                                "trace": {
                                    "orchestrationTrace": {
                                        "modelInvocationInput": E.model_input("g-0", "p")
                                    }
                                },
                            },
                            {
                                "sessionId": "s",
                                "eventTime": _FLOW_TIME,
                                "trace": {
                                    "orchestrationTrace": {
                                        "modelInvocationOutput": E.model_output("g-0", "Yes.", 5, 1)
                                    }
                                },
                            },
                        ]
                    },
                }
            }
        },
    ),
    event_message(
        "flowTraceEvent",
        {
            "trace": {
                "nodeOutputTrace": {
                    "nodeName": "Agent",
                    "timestamp": _FLOW_TIME,
                    "fields": [
                        {"nodeOutputName": "agentResponse", "content": {"document": "Yes."}}
                    ],
                }
            }
        },
    ),
    event_message(
        "flowTraceEvent",
        {
            "trace": {
                "nodeInputTrace": {
                    "nodeName": "FlowOutputNode",
                    "timestamp": _FLOW_TIME,
                    "fields": [{"nodeInputName": "document", "content": {"document": "Yes."}}],
                }
            }
        },
    ),
    event_message(
        "flowOutputEvent",
        {"nodeName": "FlowOutputNode", "nodeType": "Output", "content": {"document": "Yes."}},
    ),
    event_message("flowCompletionEvent", {"completionReason": "SUCCESS"}),
]
