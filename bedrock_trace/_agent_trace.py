"""An agent's own trace, rebuilt as child spans of the invocation span while it is read.

``invoke_agent(enableTrace=True)`` interleaves ``trace`` events with the answer's chunks. Each
carries one part of one step of the agent's work (DESIGN.md section 7)::

    {"agentId": "A1", "sessionId": "s1", "eventTime": datetime(...),
     "callerChain": [{"agentAliasArn": "arn:...:agent-alias/A1/AL1"}],
     "trace": {"orchestrationTrace": {"modelInvocationInput": {
         "traceId": "5f1c...-0", "text": "<prompt>", "foundationModel": "anthropic...",
         "type": "ORCHESTRATION", "inferenceConfiguration": {...}}}}}

Steps are grouped by the ``traceId`` inside the union member; a step is a CHAIN span under the
agent whose step it is (the invocation span, or a collaborator's AGENT span chosen by
``callerChain``). Work inside a step (model invocations, action groups, knowledge-base
lookups, code interpreter) becomes a span once its output arrives, timed from its input event
to its output event (or from the invocation's own ``metadata.startTime``/``endTime``).

Every child ends before the invocation span does: :meth:`SpanTree.close` ends whatever is
still open, at the time of the last event it saw, as incomplete. Times come from the events'
``eventTime`` (flows: ``timestamp``), kept inside the parent's interval and never after the
moment the event was read.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Mapping
from typing import Any

from mlflow.entities import SpanStatus, SpanStatusCode

from bedrock_trace import _keys as K
from bedrock_trace import _models, _spans
from bedrock_trace._config import TraceConfig
from bedrock_trace._content import prepare
from bedrock_trace._documents import to_document
from bedrock_trace._payload import json_safe

_INCOMPLETE = "the invocation ended before this step's end"


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def time_ns(value: Any) -> int | None:
    """A botocore timestamp (a datetime) in nanoseconds since the epoch; None otherwise."""
    if not isinstance(value, datetime.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    seconds = int(value.timestamp())
    return seconds * 1_000_000_000 + int(value.microsecond) * 1_000


def _member(union: Any) -> tuple[str | None, Mapping[str, Any]]:
    """The one member a union value carries: (its name, its value)."""
    for name, value in _dict(union).items():
        if isinstance(value, Mapping):
            return name, value
    return None, {}


class Node:
    """One open span of the tree (the invocation span, a step, a collaborator, a flow node)."""

    __slots__ = ("attributes", "last_ns", "outputs", "parent", "span", "start_ns")

    def __init__(self, span: Any, start_ns: int, parent: Node | None) -> None:
        self.span = span
        self.start_ns = start_ns
        self.last_ns = start_ns  # the latest time seen inside this span (events, child ends)
        self.parent = parent
        self.outputs: dict[str, Any] = {}
        self.attributes: dict[str, Any] = {}

    def saw(self, t: int) -> None:
        node: Node | None = self
        while node is not None and node.last_ns < t:
            node.last_ns = t
            node = node.parent


class SpanTree:
    """Child spans under one parent span, each ended exactly once, all before the parent."""

    def __init__(self, parent_span: Any, config: TraceConfig) -> None:
        self.config = config
        self.root = Node(parent_span, int(getattr(parent_span, "start_time_ns", 0) or 0), None)
        self.open: list[Node] = []  # open child nodes, in the order they were opened
        self.read_ns = time.time_ns()
        self.usage: dict[str, int] = {}
        # Events and the end may come from two threads (a close() while another thread
        # reads): one at a time, and nothing opens once the tree is closed.
        self.lock = threading.RLock()
        self.closed = False

    # --- time -----------------------------------------------------------------------------

    def at(self, value: Any, parent: Node) -> int:
        """An event's time (a datetime, or None for "when it was read") inside ``parent``."""
        t = time_ns(value)
        return self.inside(parent, self.read_ns if t is None else t)

    def inside(self, parent: Node, t: int) -> int:
        """``t`` kept inside ``parent``: not after the last read, and never before the parent
        started (that wins if the clock went back)."""
        return max(min(t, self.read_ns), parent.start_ns)

    # --- spans ----------------------------------------------------------------------------

    def _start(
        self,
        parent: Node,
        name: str,
        span_type: str,
        inputs: Any,
        attributes: dict[str, Any],
        t: int,
    ) -> Any:
        if parent.span is None or self.closed:
            return None
        recorded = (
            prepare(self.config, "inputs", inputs, attributes) if inputs is not None else None
        )
        return _spans.start(
            name, span_type, recorded, attributes, parent=parent.span, start_time_ns=t
        )

    def open_node(
        self,
        parent: Node,
        name: str,
        span_type: str,
        t: int,
        inputs: Any = None,
        attributes: dict[str, Any] | None = None,
    ) -> Node:
        """Open a span that stays open while later events nest under it."""
        # An event's time is kept inside its scope by at(); the step a collaborator is called
        # in may have started later than that scope.
        t = self.inside(parent, t)
        span = self._start(parent, name, span_type, inputs, dict(attributes or {}), t)
        node = Node(span, t, parent)
        parent.saw(t)
        self.open.append(node)
        return node

    def end_node(
        self,
        node: Node,
        *,
        error: tuple[str, dict[str, Any]] | None = None,
        incomplete: bool = False,
    ) -> None:
        """End an open node (and every node still open under it) at the last time it saw."""
        if node not in self.open:
            return
        for other in reversed(self.open):  # children first: they were opened later
            if other is not node and self._under(other, node):
                self.end_node(other, incomplete=True)
        self.open.remove(node)
        attributes = dict(node.attributes)
        if incomplete:
            attributes[K.INCOMPLETE] = True
            attributes[K.END_REASON] = _INCOMPLETE
        status: Any = SpanStatusCode.OK
        if error is not None:
            status = SpanStatus(SpanStatusCode.ERROR, error[0])
            attributes.update(error[1])
        self._end(node.span, node.start_ns, node.last_ns, node.outputs or None, attributes, status)
        if node.parent is not None:
            node.parent.saw(node.last_ns)

    @staticmethod
    def _under(node: Node, ancestor: Node) -> bool:
        parent = node.parent
        while parent is not None:
            if parent is ancestor:
                return True
            parent = parent.parent
        return False

    def leaf(
        self,
        parent: Node,
        name: str,
        span_type: str,
        start: int,
        end: int,
        *,
        inputs: Any = None,
        outputs: Any = None,
        attributes: dict[str, Any] | None = None,
        end_attributes: dict[str, Any] | None = None,
        status: Any = SpanStatusCode.OK,
    ) -> None:
        """A span with no children, started and ended at once (its output has arrived)."""
        start = self.inside(parent, start)
        end = min(max(end, start), self.read_ns)
        span = self._start(parent, name, span_type, inputs, dict(attributes or {}), start)
        self._end(span, start, end, outputs, dict(end_attributes or {}), status)
        parent.saw(end)

    def _end(
        self, span: Any, start: int, end: int, outputs: Any, attributes: dict[str, Any], status: Any
    ) -> None:
        if span is None:
            return
        recorded: Any = None
        try:
            recorded = prepare(self.config, "outputs", outputs, attributes)
        finally:
            _spans.end(
                span,
                status=status,
                outputs=recorded,
                attributes=attributes,
                end_time_ns=max(start, end),
            )

    def close(self) -> None:
        """End every span still open, as incomplete (the parent is about to end)."""
        with self.lock:
            self.closed = True
            while self.open:
                self.end_node(self.open[0], incomplete=True)

    def add_usage(self, usage: Mapping[str, int]) -> None:
        for key in (K.INPUT_TOKENS, K.OUTPUT_TOKENS, K.TOTAL_TOKENS):
            self.usage[key] = self.usage.get(key, 0) + usage.get(key, 0)


# --- agents --------------------------------------------------------------------------------


class _Step:
    """One step of one agent (one ``traceId``): a CHAIN span and the work waiting for output."""

    __slots__ = ("llm", "node", "tool", "trace_id")

    def __init__(self, node: Node, trace_id: str | None) -> None:
        self.node = node
        self.trace_id = trace_id
        self.llm: tuple[Mapping[str, Any], int] | None = None  # model input, its time
        self.tool: tuple[str, str, Any, dict[str, Any], int] | None = None


class _Scope:
    """The spans of one agent: the invocation span, or a collaborator's AGENT span."""

    __slots__ = ("key", "node", "step")

    def __init__(self, key: tuple[str, ...], node: Node) -> None:
        self.key = key
        self.node = node
        self.step: _Step | None = None


_STEP_NAMES = {
    "preProcessingTrace": "preProcessing",
    "orchestrationTrace": "orchestration",
    "postProcessingTrace": "postProcessing",
    "routingClassifierTrace": "routingClassifier",
    "customOrchestrationTrace": "customOrchestration",
    "failureTrace": "failure",
}


class AgentTrace:
    """Turns an agent's ``TracePart``s into spans under ``root`` (a node of ``tree``)."""

    def __init__(self, tree: SpanTree, root: Node) -> None:
        self.tree = tree
        self.root = _Scope((), root)
        self.scopes: dict[tuple[str, ...], _Scope] = {(): self.root}

    # --- scopes ---------------------------------------------------------------------------

    def _scope_for(self, part: Mapping[str, Any]) -> _Scope:
        """The agent an event belongs to, from its ``callerChain`` (missing: the top agent)."""
        chain = part.get("callerChain")
        arns = [_dict(caller).get("agentAliasArn") for caller in chain or ()]
        key = tuple(str(arn) for arn in arns[1:])
        while key:
            scope = self.scopes.get(key)
            if scope is not None and scope.node in self.tree.open:
                return scope
            # The collaborator's alias ARN may be missing from its invocation input: take the
            # latest collaborator still open at the same depth under the same caller.
            siblings = [
                s
                for k, s in self.scopes.items()
                if len(k) == len(key) and k[:-1] == key[:-1] and s.node in self.tree.open
            ]
            if siblings:
                return siblings[-1]
            key = key[:-1]
        return self.root

    def _step(self, scope: _Scope, name: str, trace_id: str | None, t: int) -> _Step:
        step = scope.step
        if step is not None and step.node in self.tree.open and step.trace_id == trace_id:
            step.node.saw(t)
            return step
        if step is not None:
            self._end_step(step)
        attributes = {K.AGENT_TRACE_ID: trace_id} if trace_id else {}
        node = self.tree.open_node(scope.node, name, K.SpanType.CHAIN, t, attributes=attributes)
        scope.step = _Step(node, trace_id)
        return scope.step

    def _end_step(self, step: _Step, error: tuple[str, dict[str, Any]] | None = None) -> None:
        self._flush(step)
        self.tree.end_node(step.node, error=error)

    def _flush(self, step: _Step) -> None:
        """Work whose output never came (the step or the stream ended first): end it now."""
        incomplete = {K.INCOMPLETE: True, K.END_REASON: _INCOMPLETE}
        if step.llm is not None:
            self._llm(step, None, step.node.last_ns, incomplete)
        if step.tool is not None:
            self._end_tool(step, None, step.node.last_ns, end_attributes=incomplete)

    def _end_tool(
        self,
        step: _Step,
        started: int | None,
        end: int,
        *,
        outputs: Any = None,
        end_attributes: dict[str, Any] | None = None,
    ) -> None:
        """The span of the step's pending call (action group, lookup, code), now ended."""
        if step.tool is None:  # an output whose input was not seen: still a span
            step.tool = ("observation", K.SpanType.TOOL, None, {}, end)
        name, span_type, inputs, attributes, start = step.tool
        step.tool = None
        self.tree.leaf(
            step.node,
            name,
            span_type,
            started or start,
            end,
            inputs=inputs,
            outputs=outputs,
            attributes=attributes,
            end_attributes=end_attributes,
        )

    def close(self) -> None:
        """End the steps still open, with their pending work (the stream is ending)."""
        for scope in list(self.scopes.values()):
            if scope.step is not None and scope.step.node in self.tree.open:
                self._flush(scope.step)

    # --- events ---------------------------------------------------------------------------

    def on_trace(self, part: Mapping[str, Any]) -> None:
        """One ``TracePart``: the step it belongs to gets the span it describes."""
        scope = self._scope_for(part)
        t = self.tree.at(part.get("eventTime"), scope.node)
        kind, body = _member(part.get("trace"))
        if kind is None:
            return
        if kind == "guardrailTrace":
            self._guardrail(scope, body, t)
            return
        if kind in ("failureTrace", "customOrchestrationTrace"):
            trace_id = _str(body.get("traceId"))
            current = scope.step
            if (
                current is not None
                and current.node in self.tree.open
                and trace_id in (None, current.trace_id)
            ):
                step = current  # the failure of the step in progress
                step.node.saw(t)
            else:
                step = self._step(scope, _STEP_NAMES[kind], trace_id, t)
            if kind == "customOrchestrationTrace":
                text = _dict(body.get("event")).get("text")
                step.node.outputs.setdefault("events", []).append(text)
            else:
                self._failure(scope, step, body)
            return
        member_name, member = _member(body)
        if member_name is None:
            return
        step = self._step(scope, _STEP_NAMES.get(kind, kind), _str(member.get("traceId")), t)
        handler = _MEMBERS.get(member_name)
        if handler is not None:
            handler(self, scope, step, member, t)
        else:  # a part this version does not know: kept on the step, not lost
            step.node.outputs[member_name] = json_safe(
                dict(member), self.tree.config.include_binary
            )

    def _guardrail(self, scope: _Scope, body: Mapping[str, Any], t: int) -> None:
        metadata = _dict(body.get("metadata"))
        start = time_ns(metadata.get("startTime")) or t
        end = time_ns(metadata.get("endTime")) or t
        action = _str(body.get("action"))
        outputs = {
            "action": action,
            "inputAssessments": body.get("inputAssessments") or [],
            "outputAssessments": body.get("outputAssessments") or [],
        }
        attributes: dict[str, Any] = {}
        if trace_id := _str(body.get("traceId")):
            attributes[K.AGENT_TRACE_ID] = trace_id
        end_attributes = {K.GUARDRAIL_ACTION: action} if action else {}
        self.tree.leaf(
            scope.node,
            "guardrail",
            K.SpanType.GUARDRAIL,
            start,
            end,
            outputs=json_safe(outputs),
            attributes=attributes,
            end_attributes=end_attributes,
        )

    def _failure(self, scope: _Scope, step: _Step, body: Mapping[str, Any]) -> None:
        reason = _str(body.get("failureReason")) or "the agent reported a failure"
        attributes: dict[str, Any] = {K.FAILURE_REASON: reason}
        code = body.get("failureCode")
        if isinstance(code, int) and not isinstance(code, bool):
            attributes[K.FAILURE_CODE] = code
        step.node.outputs["failureReason"] = reason
        self._end_step(step, error=(reason, attributes))
        if scope.step is step:
            scope.step = None

    # --- members of a step ----------------------------------------------------------------

    def _model_input(self, scope: _Scope, step: _Step, member: Mapping[str, Any], t: int) -> None:
        if step.llm is not None:
            self._llm(step, None, t, {K.INCOMPLETE: True, K.END_REASON: _INCOMPLETE})
        step.llm = (member, t)

    def _model_output(self, scope: _Scope, step: _Step, member: Mapping[str, Any], t: int) -> None:
        self._llm(step, member, t, {})

    def _llm(
        self, step: _Step, output: Mapping[str, Any] | None, t: int, extra: dict[str, Any]
    ) -> None:
        given, start = step.llm or ({}, t)
        step.llm = None
        inputs = {key: value for key, value in given.items() if key != "traceId"}
        attributes: dict[str, Any] = {}
        if model := _str(given.get("foundationModel")):
            attributes[K.MODEL] = model
            if provider := _models.provider_of(model):
                attributes[K.PROVIDER] = provider
        if prompt_type := _str(given.get("type")):
            attributes[K.PROMPT_TYPE] = prompt_type
        if trace_id := step.trace_id:
            attributes[K.AGENT_TRACE_ID] = trace_id
        end_attributes = dict(extra)
        outputs: dict[str, Any] | None = None
        end = t
        if output is not None:
            metadata = _dict(output.get("metadata"))
            start = time_ns(metadata.get("startTime")) or start
            end = time_ns(metadata.get("endTime")) or t
            usage = _dict(metadata.get("usage"))
            if made := _models.make_usage(usage.get("inputTokens"), usage.get("outputTokens")):
                end_attributes[K.CHAT_USAGE] = made
                self.tree.add_usage(made)
            outputs = {
                key: value
                for key, value in output.items()
                if key in ("rawResponse", "parsedResponse", "reasoningContent")
            }
            if parsed := output.get("parsedResponse"):
                step.node.outputs["parsedResponse"] = json_safe(parsed)
        self.tree.leaf(
            step.node,
            _str(given.get("foundationModel")) or "model",
            K.SpanType.LLM,
            start,
            end,
            inputs=json_safe(inputs, self.tree.config.include_binary) if inputs else None,
            outputs=json_safe(outputs, self.tree.config.include_binary),
            attributes=attributes,
            end_attributes=end_attributes,
        )

    def _rationale(self, scope: _Scope, step: _Step, member: Mapping[str, Any], t: int) -> None:
        step.node.outputs["rationale"] = member.get("text")

    def _invocation_input(
        self, scope: _Scope, step: _Step, member: Mapping[str, Any], t: int
    ) -> None:
        if step.tool is not None:  # a second call before the first one's output: end it
            self._flush(step)
        group = _dict(member.get("actionGroupInvocationInput"))
        if group:
            name = _str(group.get("function")) or _str(group.get("apiPath")) or "actionGroup"
            attributes = {K.ACTION_GROUP: group.get("actionGroupName")}
            inputs = {k: v for k, v in group.items() if k not in ("actionGroupName",)}
            step.tool = (name, K.SpanType.TOOL, json_safe(inputs), attributes, t)
            return
        lookup = _dict(member.get("knowledgeBaseLookupInput"))
        if lookup:
            attributes = {K.KNOWLEDGE_BASE_ID: lookup.get("knowledgeBaseId")}
            inputs = {"query": lookup.get("text")}
            step.tool = ("knowledgeBaseLookup", K.SpanType.RETRIEVER, inputs, attributes, t)
            return
        code = _dict(member.get("codeInterpreterInvocationInput"))
        if code:
            step.tool = ("codeInterpreter", K.SpanType.TOOL, json_safe(dict(code)), {}, t)
            return
        collaborator = _dict(member.get("agentCollaboratorInvocationInput"))
        if collaborator:
            self._open_collaborator(scope, step, collaborator, t)

    def _open_collaborator(
        self, scope: _Scope, step: _Step, given: Mapping[str, Any], t: int
    ) -> None:
        name = _str(given.get("agentCollaboratorName")) or "collaborator"
        arn = _str(given.get("agentCollaboratorAliasArn")) or f"#{len(self.scopes)}"
        attributes = {K.COLLABORATOR: name}
        inputs = json_safe(dict(_dict(given.get("input"))), self.tree.config.include_binary)
        node = self.tree.open_node(step.node, name, K.SpanType.AGENT, t, inputs, attributes)
        key = (*scope.key, arn)
        self.scopes.pop(key, None)  # a second call of the same collaborator: a fresh scope
        self.scopes[key] = _Scope(key, node)

    def _observation(self, scope: _Scope, step: _Step, member: Mapping[str, Any], t: int) -> None:
        include_binary = self.tree.config.include_binary
        metadata = _dict(next((v for v in member.values() if isinstance(v, Mapping)), {}))
        metadata = _dict(metadata.get("metadata"))
        end = time_ns(metadata.get("endTime")) or t
        if collaborator := _dict(member.get("agentCollaboratorInvocationOutput")):
            self._close_collaborator(scope, collaborator)
            return
        for key in ("finalResponse", "repromptResponse"):
            if isinstance(value := member.get(key), Mapping):
                step.node.outputs[key] = json_safe(
                    {k: v for k, v in value.items() if k != "metadata"}, include_binary
                )
        outputs: Any = None
        if isinstance(group := member.get("actionGroupInvocationOutput"), Mapping):
            outputs = group.get("text")
        elif isinstance(lookup := member.get("knowledgeBaseLookupOutput"), Mapping):
            references = lookup.get("retrievedReferences") or []
            outputs = [to_document(reference, include_binary) for reference in references]
        elif isinstance(code := member.get("codeInterpreterInvocationOutput"), Mapping):
            outputs = json_safe({k: v for k, v in code.items() if k != "metadata"}, include_binary)
        else:
            return
        self._end_tool(step, time_ns(metadata.get("startTime")), end, outputs=outputs)

    def _close_collaborator(self, scope: _Scope, output: Mapping[str, Any]) -> None:
        arn = _str(output.get("agentCollaboratorAliasArn"))
        key = (*scope.key, arn) if arn else None
        target = self.scopes.get(key) if key else None
        if target is None:
            children = [s for k, s in self.scopes.items() if k[:-1] == scope.key and k != scope.key]
            opened = [s for s in children if s.node in self.tree.open]
            target = opened[-1] if opened else None
        if target is None:
            return
        for inner in list(self.scopes.values()):
            inside = inner.key[: len(target.key)] == target.key
            if inside and inner.step is not None and inner.step.node in self.tree.open:
                self._flush(inner.step)
        payload = _dict(output.get("output"))
        target.node.outputs.update(json_safe(dict(payload), self.tree.config.include_binary))
        self.tree.end_node(target.node)


_MEMBERS = {
    "modelInvocationInput": AgentTrace._model_input,
    "modelInvocationOutput": AgentTrace._model_output,
    "rationale": AgentTrace._rationale,
    "invocationInput": AgentTrace._invocation_input,
    "observation": AgentTrace._observation,
}


# --- flows ---------------------------------------------------------------------------------

# nodeActionTrace operations, by the span type that shows them best.
_ACTION_TYPES = {
    "InvokeModel": K.SpanType.LLM,
    "Converse": K.SpanType.CHAT_MODEL,
    "Retrieve": K.SpanType.RETRIEVER,
    "RetrieveAndGenerate": K.SpanType.CHAIN,
    "InvokeAgent": K.SpanType.AGENT,
    "ApplyGuardrail": K.SpanType.GUARDRAIL,
}


def _fields(fields: Any, name_key: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in fields if isinstance(fields, list) else ():
        field = _dict(field)
        _kind, content = _member(field.get("content"))
        name = _str(field.get(name_key)) or str(len(values))
        values[name] = content if content else _dict(field.get("content")).get("document")
    return values


class FlowTrace:
    """Turns ``flowTraceEvent``s into one span per flow node under the invoke_flow span."""

    def __init__(self, tree: SpanTree) -> None:
        self.tree = tree
        self.nodes: dict[str, tuple[Node, AgentTrace | None]] = {}

    def _node(self, name: str, t: int) -> Node:
        current = self.nodes.get(name)
        if current is not None and current[0] in self.tree.open:
            return current[0]
        node = self.tree.open_node(
            self.tree.root, name, K.SpanType.CHAIN, t, attributes={K.FLOW_NODE: name}
        )
        self.nodes[name] = (node, None)
        return node

    def on_trace(self, event: Mapping[str, Any]) -> None:
        kind, body = _member(event.get("trace"))
        if kind is None:
            return
        name = _str(body.get("nodeName")) or "node"
        t = self.tree.at(body.get("timestamp"), self.tree.root)
        include_binary = self.tree.config.include_binary
        if kind == "nodeInputTrace":
            current = self.nodes.get(name)
            if current is not None and current[0] in self.tree.open:
                self._end(name)  # the node runs again (a loop): its previous run is over
            inputs = json_safe(_fields(body.get("fields"), "nodeInputName"), include_binary)
            node = self.tree.open_node(
                self.tree.root, name, K.SpanType.CHAIN, t, inputs, {K.FLOW_NODE: name}
            )
            self.nodes[name] = (node, None)
        elif kind == "nodeOutputTrace":
            node = self._node(name, t)
            node.saw(t)
            node.outputs.update(
                json_safe(_fields(body.get("fields"), "nodeOutputName"), include_binary)
            )
            self._end(name)
        elif kind == "conditionNodeResultTrace":
            node = self._node(name, t)
            node.saw(t)
            node.outputs["satisfiedConditions"] = json_safe(body.get("satisfiedConditions") or [])
            self._end(name)
        elif kind == "nodeActionTrace":
            node = self._node(name, t)
            operation = _str(body.get("operationName")) or "action"
            service = _str(body.get("serviceName"))
            self.tree.leaf(
                node,
                f"{service}.{operation}" if service else operation,
                _ACTION_TYPES.get(operation, K.SpanType.TOOL),
                t,
                t,
                inputs=json_safe(body.get("operationRequest"), include_binary),
                outputs=json_safe(body.get("operationResponse"), include_binary),
            )
        elif kind == "nodeDependencyTrace":
            node = self._node(name, t)
            node_entry = self.nodes[name]
            agent = node_entry[1] or AgentTrace(self.tree, node)
            self.nodes[name] = (node, agent)
            for part in _dict(body.get("traceElements")).get("agentTraces") or ():
                if isinstance(part, Mapping):
                    agent.on_trace(part)

    def _end(self, name: str) -> None:
        node, agent = self.nodes.pop(name)
        if agent is not None:
            agent.close()
        self.tree.end_node(node)

    def close(self) -> None:
        for name in list(self.nodes):
            node, agent = self.nodes[name]
            if agent is not None and node in self.tree.open:
                agent.close()
