"""Bedrock Agents: InvokeAgent and InvokeInlineAgent, a scripted agent and its trace.

The agent plays the steps of its :attr:`Reply.steps <bedrock_trace.standin.Reply.steps>` in
order (default: pre-processing, a knowledge-base lookup, an action-group call), then answers.
With ``enableTrace`` each step is told in ``trace`` events shaped as the service sends them: a
``TracePart`` carrying one member of a trace union (``orchestrationTrace`` with one of
``modelInvocationInput``, ``modelInvocationOutput``, ``rationale``, ``invocationInput``,
``observation``), the step's ``traceId`` inside that member, ``eventTime`` stamps, and
``callerChain`` / ``collaboratorName`` on a collaborator's own events. A sample, as decoded by
botocore::

    {"trace": {"agentId": "AGENT12345", "agentAliasId": "TSTALIASID", "agentVersion": "DRAFT",
               "sessionId": "s-1", "eventTime": datetime(...),
               "callerChain": [{"agentAliasArn": "arn:aws:bedrock:...:agent-alias/AGENT12345/..."}],
               "trace": {"orchestrationTrace": {"rationale": {"traceId": "...-0", "text": ...}}}}}

The answer arrives as ``chunk`` events (``bytes``, plus ``attribution.citations`` when the
knowledge base was used); ``returnControl`` hands an action to the caller, whose next call
sends the result in ``sessionState.returnControlInvocationResults``.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import attrs

from bedrock_trace._eventstream import event_message, exception_message
from bedrock_trace.standin._answer import _estimate_tokens, _guess_argument
from bedrock_trace.standin._exchange import _Exchange, _Response
from bedrock_trace.standin._knowledge import _knowledge_base_text, _references
from bedrock_trace.standin._scenario import DEFAULT_AGENT_STEPS, Reply
from bedrock_trace.standin._wire import (
    _JSON,
    _JsonObject,
    _list,
    _mapping,
    _stamp,
    _str,
    _word_pieces,
)

#: The model the scripted agent runs on when the request does not name one (invoke_agent).
DEFAULT_AGENT_MODEL: Final = "anthropic.claude-3-5-haiku-20241022-v1:0"
_ACCOUNT_ARN: Final = "arn:aws:bedrock:us-east-1:123456789012"
_KNOWLEDGE_BASE_ID: Final = "KBEXAMPLE1"
_ACTION_GROUP: Final = "TravelActions"
_FUNCTION: Final = "get_weather"
_COLLABORATOR: Final = "ResearchAgent"
_COLLABORATOR_ID: Final = "COLLAB0001"
_INFERENCE: Final = {
    "maximumLength": 2048,
    "stopSequences": ["</invoke>", "</answer>", "</error>"],
    "temperature": 0.0,
    "topK": 250,
    "topP": 1.0,
}
_BLOCKED: Final = "Sorry, the model cannot answer this question."
_FAILURE_REASON: Final = (
    "The server encountered an error processing the Lambda response. Check the Lambda "
    "response and retry the request"
)
# The agent's clock starts when the request arrived and advances by these between trace events
# and over a model invocation: small, so that the stamps of a run stay close to the time the
# client reads it (a scenario's ``slow.per_chunk`` sets the pace instead).
_EVENT_STEP: Final = timedelta(microseconds=100)
_MODEL_TIME: Final = timedelta(milliseconds=1)


@attrs.frozen
class _Agent:
    """Who is answering: ids for trace parts, the model, the knowledge base, the action."""

    inline: bool
    agent_id: str
    alias_id: str
    session_id: str
    model: str
    knowledge_base_id: str
    action_group: str
    function: str
    #: ``callerChain`` of this agent's own events (empty: not sent, an inline agent's).
    chain: tuple[str, ...]
    collaborator_name: str | None = None

    @property
    def alias_arn(self) -> str:
        return f"{_ACCOUNT_ARN}:agent-alias/{self.agent_id}/{self.alias_id}"


@attrs.define
class _Run:
    """The events of one agent run, in order, and the agent's clock."""

    exchange: _Exchange
    question: str
    traced: bool
    clock: datetime
    step: timedelta = _EVENT_STEP
    events: list[bytes] = attrs.Factory(list)
    #: The knowledge-base references the answer may cite.
    references: list[_JsonObject] = attrs.Factory(list)
    observations: list[str] = attrs.Factory(list)
    ended: bool = False

    @property
    def reply(self) -> Reply:
        return self.exchange.reply or Reply()

    def tick(self, step: timedelta | None = None) -> datetime:
        self.clock += self.step if step is None else max(step, self.step)
        return self.clock

    def emit(self, name: str, payload: Mapping[str, Any]) -> None:
        self.events.append(event_message(name, payload))

    def trace(self, agent: _Agent, kind: str, member: str, value: Any) -> None:
        """One ``trace`` event telling ``{kind: {member: value}}`` (a member of a union)."""
        self.trace_whole(agent, kind, {member: value})

    def trace_whole(self, agent: _Agent, kind: str, value: _JsonObject) -> None:
        """One ``trace`` event: ``{kind: value}`` in a TracePart of ``agent``."""
        if not self.traced:
            return
        part: _JsonObject = {}
        if not agent.inline:
            part.update(agentId=agent.agent_id, agentAliasId=agent.alias_id, agentVersion="DRAFT")
        part["sessionId"] = agent.session_id
        part["eventTime"] = _stamp(self.tick())
        if agent.chain:
            part["callerChain"] = [{"agentAliasArn": arn} for arn in agent.chain]
        if agent.collaborator_name is not None:
            part["collaboratorName"] = agent.collaborator_name
        part["trace"] = {kind: value}
        self.emit("trace", part)

    def usage(self, prompt: str, output: str) -> _JsonObject:
        reply = self.reply
        return {
            "inputTokens": (
                reply.input_tokens
                if reply.input_tokens is not None
                else _estimate_tokens(len(prompt))
            ),
            "outputTokens": (
                reply.output_tokens
                if reply.output_tokens is not None
                else _estimate_tokens(len(output))
            ),
        }

    def metadata(self, started: datetime, usage: _JsonObject | None = None) -> _JsonObject:
        ended = self.tick()
        total = int((ended - started) / timedelta(milliseconds=1))
        metadata: _JsonObject = {
            "clientRequestId": str(uuid.uuid4()),
            "startTime": _stamp(started),
            "endTime": _stamp(ended),
            "totalTimeMs": total,
        }
        if usage is not None:
            metadata["usage"] = usage
        return metadata

    def model_invocation(
        self, agent: _Agent, kind: str, trace_id: str, prompt_type: str, output: str
    ) -> None:
        """``modelInvocationInput`` then ``modelInvocationOutput`` of one model call."""
        prompt = json.dumps(
            {
                "system": f"You are {agent.collaborator_name or 'a helpful assistant'}. "
                "Answer from the knowledge base and your tools.",
                "messages": [{"role": "user", "content": [{"type": "text", "text": self.question}]}]
                + [
                    {"role": "user", "content": [{"type": "text", "text": o}]}
                    for o in self.observations
                ],
            },
            ensure_ascii=False,
        )
        self.trace(
            agent,
            kind,
            "modelInvocationInput",
            {
                "traceId": trace_id,
                "text": prompt,
                "type": prompt_type,
                "foundationModel": agent.model,
                "inferenceConfiguration": dict(_INFERENCE),
                "promptCreationMode": "DEFAULT",
                "parserMode": "DEFAULT",
            },
        )
        started = self.clock
        self.tick(_MODEL_TIME)
        raw = {
            "id": "msg_bdrk_" + secrets.token_hex(12),
            "type": "message",
            "role": "assistant",
            "model": agent.model.removeprefix("anthropic."),
            "content": [{"type": "text", "text": output}],
            "stop_reason": "end_turn",
            "usage": {},
        }
        usage = self.usage(prompt, output)
        raw["usage"] = {
            "input_tokens": usage["inputTokens"],
            "output_tokens": usage["outputTokens"],
        }
        value: _JsonObject = {
            "traceId": trace_id,
            "rawResponse": {"content": json.dumps(raw, ensure_ascii=False)},
            "metadata": self.metadata(started, usage),
        }
        if kind == "orchestrationTrace":
            value["reasoningContent"] = {
                "reasoningText": {"text": f"Thinking about: {self.question}", "signature": "c2ln"}
            }
        if kind == "preProcessingTrace":
            value["parsedResponse"] = {
                "isValid": True,
                "rationale": "The question is in scope for this agent.",
            }
        if kind == "postProcessingTrace":
            value["parsedResponse"] = {"text": output}
        self.trace(agent, kind, "modelInvocationOutput", value)

    def orchestration(self, agent: _Agent, trace_id: str, thought: str) -> None:
        """The model call that opens an orchestration step, and its rationale."""
        self.model_invocation(agent, "orchestrationTrace", trace_id, "ORCHESTRATION", thought)
        self.trace(agent, "orchestrationTrace", "rationale", {"traceId": trace_id, "text": thought})

    def invocation(self, agent: _Agent, trace_id: str, kind: str, member: str, value: Any) -> None:
        self.trace(
            agent,
            "orchestrationTrace",
            "invocationInput",
            {"traceId": trace_id, "invocationType": kind, member: value},
        )

    def observation(
        self, agent: _Agent, trace_id: str, kind: str | None, member: str, value: Any
    ) -> None:
        observed: _JsonObject = {"traceId": trace_id, member: value}
        if kind is not None:
            observed["type"] = kind
        self.trace(agent, "orchestrationTrace", "observation", observed)


# --- the steps -----------------------------------------------------------------------------


def _pre_processing(run: _Run, agent: _Agent, base: str, index: int) -> None:
    output = (
        "<thinking>The user asks a question the agent can answer.</thinking> <category>D</category>"
    )
    run.model_invocation(
        agent, "preProcessingTrace", f"{base}-pre-{index}", "PRE_PROCESSING", output
    )


def _post_processing(run: _Run, agent: _Agent, base: str, index: int) -> None:
    text = " ".join(run.observations) or run.question
    run.model_invocation(
        agent, "postProcessingTrace", f"{base}-post-{index}", "POST_PROCESSING", text
    )


def _knowledge_base(run: _Run, agent: _Agent, base: str, index: int) -> None:
    trace_id = f"{base}-{index}"
    run.orchestration(agent, trace_id, "I will search the knowledge base for this question.")
    lookup = {"knowledgeBaseId": agent.knowledge_base_id, "text": run.question}
    run.invocation(agent, trace_id, "KNOWLEDGE_BASE", "knowledgeBaseLookupInput", lookup)
    started = run.clock
    references = _references(run.question)
    output = {"retrievedReferences": references, "metadata": run.metadata(started)}
    run.observation(agent, trace_id, "KNOWLEDGE_BASE", "knowledgeBaseLookupOutput", output)
    # The answer quotes the best passage, and cites it.
    run.references.append(references[0])
    run.observations.append(_knowledge_base_text(references[:1]))


def _call_action(
    run: _Run, agent: _Agent, trace_id: str, execution: str, **extra: str
) -> list[_JsonObject]:
    """The step's model call and rationale, then its ``actionGroupInvocationInput``."""
    run.orchestration(agent, trace_id, f"I will call {agent.function} of {agent.action_group}.")
    value = _guess_argument(run.question, "city", {"type": "string"})
    parameters = [{"name": "city", "type": "string", "value": str(value)}]
    call = {
        "actionGroupName": agent.action_group,
        "function": agent.function,
        "parameters": parameters,
        "executionType": execution,
        **extra,
    }
    run.invocation(agent, trace_id, "ACTION_GROUP", "actionGroupInvocationInput", call)
    return parameters


def _action_group(run: _Run, agent: _Agent, base: str, index: int) -> None:
    trace_id = f"{base}-{index}"
    parameters = _call_action(run, agent, trace_id, "LAMBDA")
    started = run.clock
    result = f"Sunny and 22 degrees Celsius in {parameters[0]['value']} today."
    output = {"text": result, "metadata": run.metadata(started)}
    run.observation(agent, trace_id, "ACTION_GROUP", "actionGroupInvocationOutput", output)
    run.observations.append(result)


def _code_interpreter(run: _Run, agent: _Agent, base: str, index: int) -> None:
    trace_id = f"{base}-{index}"
    run.orchestration(agent, trace_id, "I will compute this with the code interpreter.")
    code = "total = sum([60, 45, 52])\nprint(f'total: {total} EUR')"
    run.invocation(
        agent,
        trace_id,
        "ACTION_GROUP_CODE_INTERPRETER",
        "codeInterpreterInvocationInput",
        {"code": code, "files": []},
    )
    started = run.clock
    output = {
        "executionOutput": "total: 157 EUR",
        "executionTimeout": False,
        "files": ["expenses.csv"],
        "metadata": run.metadata(started),
    }
    # Observation.type has no value for the code interpreter: the service leaves it out.
    run.observation(agent, trace_id, None, "codeInterpreterInvocationOutput", output)
    run.observations.append("total: 157 EUR")


def _files(run: _Run, agent: _Agent, base: str, index: int) -> None:
    content = b"day,amount\n1,60\n2,45\n3,52\n"
    files = [
        {"name": "expenses.csv", "type": "text/csv", "bytes": base64.b64encode(content).decode()},
        {"name": "chart.png", "type": "image/png", "bytes": base64.b64encode(_PNG).decode()},
    ]
    run.emit("files", {"files": files})


# The smallest valid PNG (1x1, transparent): binary content as code interpreter files carry.
_PNG: Final = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def _collaborator(run: _Run, agent: _Agent, base: str, index: int) -> None:
    trace_id = f"{base}-{index}"
    run.orchestration(agent, trace_id, f"I will ask {_COLLABORATOR} to research this.")
    helper = attrs.evolve(
        agent,
        agent_id=_COLLABORATOR_ID,
        alias_id="COLLABALS1",
        chain=(*agent.chain, f"{_ACCOUNT_ARN}:agent-alias/{_COLLABORATOR_ID}/COLLABALS1")
        if agent.chain
        else (agent.alias_arn, f"{_ACCOUNT_ARN}:agent-alias/{_COLLABORATOR_ID}/COLLABALS1"),
        collaborator_name=_COLLABORATOR,
    )
    payload = {"type": "TEXT", "text": run.question}
    call = {
        "agentCollaboratorName": _COLLABORATOR,
        "agentCollaboratorAliasArn": helper.alias_arn,
        "input": payload,
    }
    run.invocation(agent, trace_id, "AGENT_COLLABORATOR", "agentCollaboratorInvocationInput", call)
    started = run.clock
    # The collaborator's own step, told on its longer caller chain.
    inner = f"{uuid.uuid4()}-0"
    answer = f"{_COLLABORATOR} found: " + _knowledge_base_text(_references(run.question, 1))
    run.orchestration(helper, inner, "I know the answer from my sources.")
    final = {"text": answer, "metadata": run.metadata(run.clock)}
    run.observation(helper, inner, "FINISH", "finalResponse", final)
    output = {
        "agentCollaboratorName": _COLLABORATOR,
        "agentCollaboratorAliasArn": helper.alias_arn,
        "output": {"type": "TEXT", "text": answer},
        "metadata": run.metadata(started),
    }
    run.observation(
        agent, trace_id, "AGENT_COLLABORATOR", "agentCollaboratorInvocationOutput", output
    )
    run.observations.append(answer)


def _guardrail(run: _Run, agent: _Agent, base: str, index: int) -> None:
    started = run.clock
    topic = {"name": "Off-topic requests", "type": "DENY", "action": "BLOCKED"}
    trace = {
        "traceId": f"{base}-guardrail-pre-{index}",
        "action": "INTERVENED",
        "inputAssessments": [{"topicPolicy": {"topics": [topic]}}],
        "outputAssessments": [],
        "metadata": run.metadata(started),
    }
    run.trace_whole(agent, "guardrailTrace", trace)
    _answer_chunks(run, run.reply.text or _BLOCKED, citations=[])
    run.ended = True


def _failure(run: _Run, agent: _Agent, base: str, index: int) -> None:
    trace_id = f"{base}-{index}"
    _call_action(run, agent, trace_id, "LAMBDA")
    started = run.clock
    failure = {
        "traceId": trace_id,
        "failureReason": _FAILURE_REASON,
        "failureCode": 424,
        "metadata": run.metadata(started),
    }
    run.trace_whole(agent, "failureTrace", failure)
    run.events.append(exception_message("dependencyFailedException", _FAILURE_REASON))
    run.ended = True


def _return_control(run: _Run, agent: _Agent, base: str, index: int) -> None:
    trace_id = f"{base}-{index}"
    invocation_id = str(uuid.uuid4())
    parameters = _call_action(run, agent, trace_id, "RETURN_CONTROL", invocationId=invocation_id)
    function_input: _JsonObject = {
        "actionGroup": agent.action_group,
        "function": agent.function,
        "parameters": parameters,
        "actionInvocationType": "RESULT",
    }
    if not agent.inline:
        function_input["agentId"] = agent.agent_id
    run.emit(
        "returnControl",
        {
            "invocationId": invocation_id,
            "invocationInputs": [{"functionInvocationInput": function_input}],
        },
    )
    run.ended = True


_STEPS: Final = {
    "pre_processing": _pre_processing,
    "knowledge_base": _knowledge_base,
    "action_group": _action_group,
    "code_interpreter": _code_interpreter,
    "files": _files,
    "collaborator": _collaborator,
    "guardrail": _guardrail,
    "failure": _failure,
    "return_control": _return_control,
    "post_processing": _post_processing,
}


# --- the answer ----------------------------------------------------------------------------


def _answer_chunks(run: _Run, text: str, citations: list[_JsonObject]) -> None:
    """The answer as ``chunk`` events: whole, or in pieces with ``streamFinalResponse``."""
    streaming = _mapping(_mapping(run.exchange.body).get("streamingConfigurations"))
    pieces = _word_pieces(text) if streaming.get("streamFinalResponse") is True else [text]
    for position, piece in enumerate(pieces):
        chunk: _JsonObject = {"bytes": base64.b64encode(piece.encode("utf-8")).decode("ascii")}
        if citations and position == len(pieces) - 1:
            chunk["attribution"] = {"citations": citations}
        run.emit("chunk", chunk)


def _citations(text: str, references: list[_JsonObject]) -> list[_JsonObject]:
    """A citation for each reference the answer quotes, its span where the quote stands."""
    citations = []
    for reference in references:
        quoted = _str(_mapping(reference.get("content")).get("text"))
        start = text.find(quoted) if quoted else -1
        if start < 0:
            continue
        part = {"text": quoted, "span": {"start": start, "end": start + len(quoted) - 1}}
        citations.append(
            {
                "generatedResponsePart": {"textResponsePart": part},
                "retrievedReferences": [reference],
            }
        )
    return citations


def _final_text(run: _Run) -> str:
    if run.reply.text is not None:
        return run.reply.text
    if run.observations:
        return " ".join(run.observations)
    return f"You said: {run.question}" if run.question else "Hello! How can I help?"


def _finish(run: _Run, agent: _Agent, base: str, index: int) -> None:
    trace_id = f"{base}-{index}"
    text = _final_text(run)
    run.model_invocation(agent, "orchestrationTrace", trace_id, "ORCHESTRATION", text)
    final = {"text": text, "metadata": run.metadata(run.clock)}
    run.observation(agent, trace_id, "FINISH", "finalResponse", final)
    _answer_chunks(run, text, _citations(text, run.references))


def _returned_results(body: Mapping[str, Any]) -> list[str]:
    """Texts of the caller's results for a returnControl (``sessionState``)."""
    state = _mapping(body.get("sessionState") or body.get("inlineSessionState"))
    texts = []
    for result in _list(state.get("returnControlInvocationResults")):
        result = _mapping(result)
        member = _mapping(result.get("functionResult") or result.get("apiResult"))
        for content in _mapping(member.get("responseBody")).values():
            texts.append(_str(_mapping(content).get("body")))
    return [t for t in texts if t]


def _agent_of(exchange: _Exchange) -> _Agent:
    body, route = _mapping(exchange.body), exchange.route
    if route.operation == "invoke_inline_agent":
        knowledge_bases = _list(body.get("knowledgeBases"))
        groups = _list(body.get("actionGroups"))
        group = _mapping(groups[0]) if groups else {}
        functions = _list(_mapping(group.get("functionSchema")).get("functions"))
        return _Agent(
            inline=True,
            agent_id="",
            alias_id="",
            session_id=route.session_id or "",
            model=_str(body.get("foundationModel")) or DEFAULT_AGENT_MODEL,
            knowledge_base_id=_str(
                _mapping(knowledge_bases[0] if knowledge_bases else {}).get("knowledgeBaseId")
            )
            or _KNOWLEDGE_BASE_ID,
            action_group=_str(group.get("actionGroupName")) or _ACTION_GROUP,
            function=_str(_mapping(functions[0] if functions else {}).get("name")) or _FUNCTION,
            chain=(),
        )
    agent = _Agent(
        inline=False,
        agent_id=route.resource_id or "",
        alias_id=route.alias_id or "",
        session_id=route.session_id or "",
        model=DEFAULT_AGENT_MODEL,
        knowledge_base_id=_KNOWLEDGE_BASE_ID,
        action_group=_ACTION_GROUP,
        function=_FUNCTION,
        chain=(),
    )
    return attrs.evolve(agent, chain=(agent.alias_arn,))


def _agent_events(exchange: _Exchange) -> list[bytes]:
    body = _mapping(exchange.body)
    run = _Run(
        exchange=exchange,
        question=_str(body.get("inputText")),
        traced=body.get("enableTrace") is True,
        clock=exchange.received,
        step=max(_EVENT_STEP, timedelta(seconds=exchange.per_event)),
    )
    agent = _agent_of(exchange)
    base = str(uuid.uuid4())
    results = _returned_results(body)
    if results:
        # The caller ran the action it was handed: answer from its result.
        run.observations.extend(results)
        _finish(run, agent, base, 0)
        return run.events
    steps = run.reply.steps if run.reply.steps is not None else DEFAULT_AGENT_STEPS
    index = 0
    for step in steps:
        _STEPS[step](run, agent, base, index)
        if run.ended:
            return run.events
        if step not in ("pre_processing", "post_processing", "files"):
            index += 1
    _finish(run, agent, base, index)
    return run.events


def _respond(exchange: _Exchange) -> _Response:
    """The response of invoke_agent / invoke_inline_agent: an event stream and its headers."""
    headers = {
        "x-amzn-bedrock-agent-content-type": _JSON,
        "x-amz-bedrock-agent-session-id": exchange.route.session_id or "",
    }
    memory = _str(_mapping(exchange.body).get("memoryId"))
    if memory and exchange.route.operation == "invoke_agent":
        headers["x-amz-bedrock-agent-memory-id"] = memory
    return _Response(headers, messages=_agent_events(exchange))
