"""One mapper per traced Bedrock Agents runtime (``bedrock-agent-runtime``) operation.

Same shape as ``_operations`` (the Bedrock Runtime table): inputs are the caller's keyword
arguments, outputs what the operation returned, rebuilt from the stream for the streaming
ones. Operations not in the table (sessions, memory, invocation steps, flow executions,
GenerateQuery, OptimizePrompt, ...) make no span.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from bedrock_trace import _keys as K
from bedrock_trace._accumulators import Recorded, _dumps
from bedrock_trace._agent_trace import AgentTrace, FlowTrace, SpanTree
from bedrock_trace._config import TraceConfig
from bedrock_trace._documents import to_document, unique_references
from bedrock_trace._operations import Attributes, Finished, Operation, _fixed, _snake
from bedrock_trace._payload import binary_placeholder, json_safe

_ID_ATTRIBUTES = (
    ("agentId", K.AGENT_ID),
    ("agentAliasId", K.AGENT_ALIAS_ID),
    ("knowledgeBaseId", K.KNOWLEDGE_BASE_ID),
    ("sessionId", K.SESSION_ID),
    ("executionId", K.EXECUTION_ID),
)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _inputs(
    params: Mapping[str, Any], config: TraceConfig, wire: Any = None
) -> tuple[Any, Attributes]:
    # Always walked: agent requests carry blobs under keys the Bedrock Runtime shortcut does
    # not look for (``sessionState.files[].source.byteContent.data``).
    return json_safe(params, config.include_binary), {}


def _attributes(params: Mapping[str, Any]) -> Attributes:
    attributes: Attributes = {}
    for key, attribute in _ID_ATTRIBUTES:
        if isinstance(value := params.get(key), str):
            attributes[attribute] = value
    return attributes


def _session_metadata(params: Mapping[str, Any]) -> dict[str, str]:
    session = params.get("sessionId")
    return {K.TRACE_SESSION: session} if isinstance(session, str) and session else {}


def _response_attributes(fields: Mapping[str, Any]) -> Attributes:
    attributes: Attributes = {}
    if isinstance(session := fields.get("sessionId"), str):
        attributes[K.SESSION_ID] = session
    if isinstance(execution := fields.get("executionId"), str):
        attributes[K.EXECUTION_ID] = execution
    if isinstance(action := fields.get("guardrailAction"), str):
        attributes[K.GUARDRAIL_ACTION] = action
    return attributes


def _without_metadata(parsed: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in parsed.items() if key != "ResponseMetadata"}


# --- retrieve, retrieve_and_generate, rerank ----------------------------------------------


def _retrieve_finish(parsed: Mapping[str, Any], headers: Mapping[str, str], call: Any) -> Finished:
    include_binary = call.config.include_binary
    results = parsed.get("retrievalResults")
    documents = [to_document(result, include_binary) for result in results or ()]
    return Finished(documents, _response_attributes(parsed))


def retriever_child(
    parent: Any, config: TraceConfig, citations: list[Any], end_ns: int | None = None
) -> None:
    """A RETRIEVER child of ``parent`` holding the cited references as documents."""
    references = unique_references(citations)
    if parent is None or not references:
        return
    tree = SpanTree(parent, config)
    documents = [to_document(reference, config.include_binary) for reference in references]
    end = end_ns if end_ns is not None else tree.read_ns
    tree.leaf(
        tree.root,
        "retrieve",
        K.SpanType.RETRIEVER,
        tree.root.start_ns,
        end,
        outputs=documents,
    )


def _rag_finish(parsed: Mapping[str, Any], headers: Mapping[str, str], call: Any) -> Finished:
    citations = parsed.get("citations")
    retriever_child(call.span, call.config, citations if isinstance(citations, list) else [])
    outputs = json_safe(_without_metadata(parsed), call.config.include_binary)
    return Finished(outputs, _response_attributes(parsed))


def _rerank_finish(parsed: Mapping[str, Any], headers: Mapping[str, str], call: Any) -> Finished:
    return Finished(json_safe(_without_metadata(parsed), call.config.include_binary), {})


# --- streams -------------------------------------------------------------------------------


# Trace parts that are unions: the part's one member names what the event is.
_UNION_PARTS = frozenset(
    {"preProcessingTrace", "orchestrationTrace", "postProcessingTrace", "routingClassifierTrace"}
)


def _trace_event_text(part: Mapping[str, Any]) -> str:
    """A short span event for a trace event: which part of which step (the span holds it)."""
    kind, body = next(((k, v) for k, v in _dict(part.get("trace")).items()), (None, None))
    summary: dict[str, Any] = {"part": kind}
    body = _dict(body)
    member = next((k for k, v in body.items() if isinstance(v, Mapping)), None)
    if member is not None and kind in _UNION_PARTS:
        summary["part"] = f"{kind}.{member}"
        body = _dict(body[member])
    if isinstance(trace_id := body.get("traceId"), str):
        summary["traceId"] = trace_id
    return _dumps(summary, False)


class AgentAccumulator:
    """InvokeAgent / InvokeInlineAgent ``completion`` events.

    Sample events (ResponseStream in the Bedrock Agents Runtime API reference)::

        {"chunk": {"bytes": b"The weather in Paris",
                   "attribution": {"citations": [{"generatedResponsePart": {...},
                                                  "retrievedReferences": [...]}]}}}
        {"trace": {"sessionId": "s1", "eventTime": datetime(...), "trace": {...}}}
        {"returnControl": {"invocationId": "i1", "invocationInputs": [...]}}
        {"files": {"files": [{"name": "chart.png", "type": "image/png", "bytes": b"..."}]}}
    """

    def __init__(self, params: Mapping[str, Any], config: TraceConfig, parent: Any) -> None:
        self.include_binary = config.include_binary
        self.config = config
        self.tree = SpanTree(parent, config)
        self.agent = AgentTrace(self.tree, self.tree.root)
        self.completion: list[str] = []
        self.citations: list[Any] = []
        self.return_control: Any = None
        self.files: list[Any] = []
        self.unknown: list[Any] = []

    def add(self, event: Mapping[str, Any], text: bool = True) -> Recorded:
        name, payload = next(iter(event.items())) if event else ("unknown", {})
        self.tree.read_ns = time.time_ns()
        payload = _dict(payload) if isinstance(payload, Mapping) else payload
        if name == "chunk" and isinstance(payload, Mapping):
            data = payload.get("bytes")
            part = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
            self.completion.append(part)
            citations = _dict(payload.get("attribution")).get("citations")
            if isinstance(citations, list):
                self.citations.extend(citations)
            if not text:
                return name, None, True
            recorded = {**payload, "bytes": part}
            return name, _dumps(recorded, self.include_binary), True
        if name == "trace" and isinstance(payload, Mapping):
            with self.tree.lock:
                if not self.tree.closed:
                    self.agent.on_trace(payload)
            return name, _trace_event_text(payload) if text else None, False
        if name == "returnControl":
            self.return_control = json_safe(payload, self.include_binary)
        elif name == "files" and isinstance(payload, Mapping):
            self.files.extend(self._file(file) for file in payload.get("files") or ())
        else:
            self.unknown.append({name: json_safe(payload, self.include_binary)})
        return name, _dumps(payload, self.include_binary) if text else None, False

    def _file(self, file: Any) -> dict[str, Any]:
        file = _dict(file)
        data = file.get("bytes")
        recorded = {key: value for key, value in file.items() if key != "bytes"}
        if isinstance(data, bytes):
            kind = file.get("type") if isinstance(file.get("type"), str) else None
            recorded["bytes"] = (
                json_safe(data, True) if self.include_binary else binary_placeholder(data, kind)
            )
        safe: dict[str, Any] = json_safe(recorded, self.include_binary)
        return safe

    def build(self) -> dict[str, Any]:
        """Ends every child span still open, then the outputs of DESIGN.md section 7."""
        with self.tree.lock:
            try:
                self.agent.close()
            finally:
                self.tree.close()
                self.agent.scopes.clear()  # the ended spans: not kept alive by the stream
        outputs: dict[str, Any] = {"completion": "".join(self.completion)}
        if self.citations:
            outputs["citations"] = json_safe(self.citations, self.include_binary)
        if self.return_control is not None:
            outputs["returnControl"] = self.return_control
        if self.files:
            outputs["files"] = self.files
        if self.unknown:
            outputs["unknown_events"] = self.unknown
        return outputs

    def attributes(self) -> Attributes:
        return _usage_attributes(self.tree)


def _usage_attributes(tree: SpanTree) -> Attributes:
    return {K.CHAT_USAGE: dict(tree.usage)} if tree.usage else {}


def _stream_finish(
    accumulator: Any, *, fields: Mapping[str, Any], headers: Mapping[str, str], inputs: Any
) -> tuple[Any, Attributes]:
    """Outputs and attributes of any of the accumulators below (their ``build`` first ends
    the child spans still open)."""
    outputs = accumulator.build()
    attributes = _response_attributes(fields)
    attributes.update(accumulator.attributes())
    return outputs, attributes


class RagAccumulator:
    """RetrieveAndGenerateStream ``stream`` events.

    Sample events (RetrieveAndGenerateStreamResponseOutput)::

        {"output": {"text": "Returns are accepted "}}
        {"citation": {"citation": {"generatedResponsePart": {...}, "retrievedReferences": [...]},
                      "generatedResponsePart": {...}, "retrievedReferences": [...]}}
        {"guardrail": {"action": "INTERVENED"}}
    """

    def __init__(self, params: Mapping[str, Any], config: TraceConfig, parent: Any) -> None:
        self.include_binary = config.include_binary
        self.config = config
        self.parent = parent
        self.text: list[str] = []
        self.citations: list[Any] = []
        self.guardrail_action: str | None = None
        self.first_output_ns: int | None = None
        self.unknown: list[Any] = []

    def add(self, event: Mapping[str, Any], text: bool = True) -> Recorded:
        name, payload = next(iter(event.items())) if event else ("unknown", {})
        output = False
        if name == "output" and isinstance(payload, Mapping):
            self.text.append(payload.get("text") or "")
            output = True
        elif name == "citation" and isinstance(payload, Mapping):
            # The same citation travels twice: as "citation" and, again, at the top level.
            citation = payload.get("citation")
            if not isinstance(citation, Mapping):
                citation = {k: v for k, v in payload.items() if k != "citation"}
            self.citations.append(citation)
        elif name == "guardrail" and isinstance(payload, Mapping):
            action = payload.get("action")
            self.guardrail_action = action if isinstance(action, str) else None
        else:
            self.unknown.append({name: json_safe(payload, self.include_binary)})
        if (output or name == "citation") and self.first_output_ns is None:
            self.first_output_ns = time.time_ns()
        return name, _dumps(payload, self.include_binary) if text else None, output

    def build(self) -> dict[str, Any]:
        retriever_child(self.parent, self.config, self.citations, self.first_output_ns)
        outputs: dict[str, Any] = {"output": {"text": "".join(self.text)}}
        if self.citations:
            outputs["citations"] = json_safe(self.citations, self.include_binary)
        if self.guardrail_action is not None:
            outputs["guardrailAction"] = self.guardrail_action
        if self.unknown:
            outputs["unknown_events"] = self.unknown
        return outputs

    def attributes(self) -> Attributes:
        action = self.guardrail_action
        return {K.GUARDRAIL_ACTION: action} if action is not None else {}


class FlowAccumulator:
    """InvokeFlow ``responseStream`` events.

    Sample events (FlowResponseStream)::

        {"flowTraceEvent": {"trace": {"nodeInputTrace": {"nodeName": "FlowInputNode",
                                                         "timestamp": datetime(...),
                                                         "fields": [...]}}}}
        {"flowOutputEvent": {"nodeName": "FlowOutputNode", "nodeType": "Output",
                             "content": {"document": "..."}}}
        {"flowCompletionEvent": {"completionReason": "SUCCESS"}}
    """

    def __init__(self, params: Mapping[str, Any], config: TraceConfig, parent: Any) -> None:
        self.include_binary = config.include_binary
        self.tree = SpanTree(parent, config)
        self.flow = FlowTrace(self.tree)
        self.outputs: list[Any] = []
        self.completion_reason: str | None = None
        self.input_requests: list[Any] = []
        self.unknown: list[Any] = []

    def add(self, event: Mapping[str, Any], text: bool = True) -> Recorded:
        name, payload = next(iter(event.items())) if event else ("unknown", {})
        self.tree.read_ns = time.time_ns()
        output = False
        if name == "flowTraceEvent" and isinstance(payload, Mapping):
            with self.tree.lock:
                if not self.tree.closed:
                    self.flow.on_trace(payload)
        elif name == "flowOutputEvent":
            self.outputs.append(json_safe(payload, self.include_binary))
            output = True
        elif name == "flowCompletionEvent" and isinstance(payload, Mapping):
            reason = payload.get("completionReason")
            self.completion_reason = reason if isinstance(reason, str) else None
        elif name == "flowMultiTurnInputRequestEvent":
            self.input_requests.append(json_safe(payload, self.include_binary))
        else:
            self.unknown.append({name: json_safe(payload, self.include_binary)})
        return name, _dumps(payload, self.include_binary) if text else None, output

    def build(self) -> dict[str, Any]:
        with self.tree.lock:
            try:
                self.flow.close()
            finally:
                self.tree.close()
                self.flow.nodes.clear()
        outputs: dict[str, Any] = {"outputs": self.outputs}
        if self.completion_reason is not None:
            outputs["completionReason"] = self.completion_reason
        if self.input_requests:
            outputs["inputRequests"] = self.input_requests
        if self.unknown:
            outputs["unknown_events"] = self.unknown
        return outputs

    def attributes(self) -> Attributes:
        return _usage_attributes(self.tree)


# --- the table -----------------------------------------------------------------------------


def _op(name: str, span_type: str, **kw: Any) -> Operation:
    return Operation(
        name=name,
        span_name=K.AGENT_SPAN_NAME_PREFIX + _snake(name),
        span_type=_fixed(span_type),
        inputs=_inputs,
        attributes=_attributes,
        **kw,
    )


_AGENT_STREAM = {
    "stream_key": "completion",
    "accumulator": AgentAccumulator,
    "stream_finish": _stream_finish,
    "trace_metadata": _session_metadata,
}

AGENT_OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        _op("InvokeAgent", K.SpanType.AGENT, **_AGENT_STREAM),
        _op("InvokeInlineAgent", K.SpanType.AGENT, **_AGENT_STREAM),
        _op("Retrieve", K.SpanType.RETRIEVER, finish=_retrieve_finish),
        _op(
            "RetrieveAndGenerate",
            K.SpanType.CHAIN,
            finish=_rag_finish,
            trace_metadata=_session_metadata,
        ),
        _op(
            "RetrieveAndGenerateStream",
            K.SpanType.CHAIN,
            stream_key="stream",
            accumulator=RagAccumulator,
            stream_finish=_stream_finish,
            trace_metadata=_session_metadata,
        ),
        _op("Rerank", K.SpanType.RERANKER, finish=_rerank_finish),
        _op(
            "InvokeFlow",
            K.WORKFLOW,
            stream_key="responseStream",
            accumulator=FlowAccumulator,
            stream_finish=_stream_finish,
        ),
    )
}


def agent_operation_for(name: str, has_event_stream_output: bool) -> Operation | None:
    """The mapper of a traced Bedrock Agents runtime operation; None for the others."""
    return AGENT_OPERATIONS.get(name)
