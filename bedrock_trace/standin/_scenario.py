"""Scenarios: the rules that script what the stand-in answers, and its record of requests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias, cast

import attrs

from bedrock_trace.standin._routes import _snake_operation
from bedrock_trace.standin._wire import _ERROR_MESSAGES, _ERROR_STATUS


def _check_non_negative(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{attribute.name} must be a number, got {value!r}")
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


def _check_mapping(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"{attribute.name} must be an object, got {value!r}")


_TYPE_NAMES: Final = {str: "a string", bool: "true or false", int: "an integer"}


def _optional(kind: type) -> Any:
    """An attrs validator: None or an instance of ``kind`` (no bools for int)."""

    # Scenarios often come from hand-written JSON: a wrong type should fail at load time, not
    # later inside a request handler.
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"{attribute.name} must be {_TYPE_NAMES[kind]}, got {value!r}")

    return check


#: Validators of a count: an integer, zero or more.
_COUNT: Final = [_optional(int), _check_non_negative]


@attrs.frozen
class ToolUse:
    """One tool call of the assistant: the tool's ``name`` and its ``input`` object."""

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    input: Mapping[str, Any] = attrs.field(factory=dict, validator=_check_mapping)
    #: Fixed id for the call; by default a fresh one in the model family's style.
    tool_use_id: str | None = None


def _to_tool_uses(value: Iterable[ToolUse | Mapping[str, Any]]) -> tuple[ToolUse, ...]:
    if isinstance(value, (str, Mapping)):
        raise TypeError("tool_uses must be a list of {name, input} objects")
    return tuple(item if isinstance(item, ToolUse) else ToolUse(**item) for item in value)


#: The steps a scripted agent can take (``Reply.steps``), as the service names their traces.
AGENT_STEPS: Final = (
    "pre_processing",  # preProcessingTrace: a model invocation that checks the question
    "knowledge_base",  # orchestration step: knowledgeBaseLookupInput / Output
    "action_group",  # orchestration step: actionGroupInvocationInput / Output (a Lambda)
    "code_interpreter",  # orchestration step: codeInterpreterInvocationInput / Output
    "files",  # a ``files`` event with the files the code interpreter made
    "collaborator",  # a collaborator agent's step, nested by callerChain (multi-agent)
    "guardrail",  # guardrailTrace INTERVENED; the answer is the blocked message
    "failure",  # an action group call that fails: failureTrace, dependencyFailedException
    "return_control",  # a returnControl event: the caller runs the action
    "post_processing",  # postProcessingTrace: a model invocation that rewrites the answer
)
#: The default agent: checks the question, looks in its knowledge base, calls its action group.
DEFAULT_AGENT_STEPS: Final = ("pre_processing", "knowledge_base", "action_group")


def _to_steps(value: Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, Mapping)):
        raise TypeError("steps must be a list of step names")
    steps = tuple(value)
    unknown = [step for step in steps if step not in AGENT_STEPS]
    if unknown:
        raise ValueError(
            f"unknown agent steps {unknown!r}; expected some of {', '.join(AGENT_STEPS)}"
        )
    return steps


@attrs.frozen
class Reply:
    """What the assistant answers. Unset fields are filled in from the request.

    A reply with neither ``text`` nor ``tool_uses`` keeps the default content (the echo, or
    the agent step), so ``Reply(output_tokens=900)`` changes only the usage. Token counts
    default to an estimate from the text lengths, latency to the time actually taken.
    """

    text: str | None = attrs.field(default=None, validator=_optional(str))
    tool_uses: tuple[ToolUse, ...] = attrs.field(default=(), converter=_to_tool_uses)
    #: Converse names (``end_turn``, ``tool_use``, ``max_tokens``, ...); mapped to each model
    #: family's own word in invoke_model bodies. Default: ``tool_use`` with tool uses.
    stop_reason: str | None = attrs.field(default=None, validator=_optional(str))
    input_tokens: int | None = attrs.field(default=None, validator=_COUNT)
    output_tokens: int | None = attrs.field(default=None, validator=_COUNT)
    cache_read_tokens: int | None = attrs.field(default=None, validator=_COUNT)
    cache_write_tokens: int | None = attrs.field(default=None, validator=_COUNT)
    latency_ms: int | None = attrs.field(default=None, validator=_COUNT)
    #: Text deltas a stream splits ``text`` into; by default one per word.
    pieces: int | None = attrs.field(default=None, validator=_COUNT)
    #: ApplyGuardrail only: ``NONE`` or ``GUARDRAIL_INTERVENED`` (then ``text`` is the output).
    guardrail_action: str | None = attrs.field(default=None, validator=_optional(str))
    #: A complete JSON response body sent as it is (non-streaming operations only).
    body: Mapping[str, Any] | None = None
    #: invoke_agent / invoke_inline_agent only: the agent's steps, in order, before it answers
    #: (None: :data:`DEFAULT_AGENT_STEPS`). Names in :data:`AGENT_STEPS`; ``guardrail``,
    #: ``failure`` and ``return_control`` end the run.
    steps: tuple[str, ...] | None = attrs.field(default=None, converter=_to_steps)

    @guardrail_action.validator
    def _check_guardrail_action(self, attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value not in (None, "NONE", "GUARDRAIL_INTERVENED"):
            raise ValueError(
                f"guardrail_action must be NONE or GUARDRAIL_INTERVENED, got {value!r}"
            )


def _to_reply(value: Reply | Mapping[str, Any] | None) -> Reply | None:
    if value is None or isinstance(value, Reply):
        return value
    return Reply(**value)


@attrs.frozen
class ServiceError:
    """Answer with an AWS error: ``code`` (the exception name), HTTP ``status``, ``message``.

    ``status`` and ``message`` default to what Bedrock sends for a modeled ``code``
    (``ValidationException`` 400, ``ThrottlingException`` 429, ...; unknown codes get 400).
    """

    code: str
    message: str | None = None
    status: int | None = attrs.field(default=None)

    @status.validator
    def _check_status(self, attribute: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and not 400 <= value <= 599:
            raise ValueError(f"error status must be 4xx or 5xx, got {value}")

    @property
    def http_status(self) -> int:
        """The status actually sent."""
        return self.status if self.status is not None else _ERROR_STATUS.get(self.code, 400)

    @property
    def text(self) -> str:
        """The message actually sent."""
        if self.message is not None:
            return self.message
        return _ERROR_MESSAGES.get(self.code, f"{self.code} (from the Bedrock stand-in)")


def _to_error(value: ServiceError | Mapping[str, Any] | str | None) -> ServiceError | None:
    if value is None or isinstance(value, ServiceError):
        return value
    if isinstance(value, str):
        return ServiceError(value)
    return ServiceError(**value)


@attrs.frozen
class StreamError:
    """A stream that fails midway: ``after`` events, an exception event, then the end.

    ``exception`` is the event-stream exception name (``modelStreamErrorException``,
    ``throttlingException``, ``internalServerException``, ``validationException``,
    ``serviceUnavailableException``, ``modelTimeoutException``); botocore raises
    ``EventStreamError`` with it as the error code. When ``after`` is at least the number of
    events, the exception follows the last one.
    """

    after: int = attrs.field(default=1, validator=_COUNT)
    exception: str = attrs.field(default="modelStreamErrorException")
    message: str | None = None

    @exception.validator
    def _check_exception(self, attribute: attrs.Attribute[Any], value: str) -> None:
        if not value:
            raise ValueError("stream_error exception must not be empty")

    @property
    def event_type(self) -> str:
        """The ``:exception-type`` header: the member name, lowerCamelCase."""
        return self.exception[0].lower() + self.exception[1:]

    @property
    def text(self) -> str:
        """The message actually sent."""
        if self.message is not None:
            return self.message
        code = self.exception[0].upper() + self.exception[1:]
        return _ERROR_MESSAGES.get(code, f"{code} (from the Bedrock stand-in)")


def _to_stream_error(value: StreamError | Mapping[str, Any] | None) -> StreamError | None:
    if value is None or isinstance(value, StreamError):
        return value
    return StreamError(**value)


@attrs.frozen
class Slow:
    """Delays, in seconds: before the status line, and before each event of a stream."""

    before_headers: float = attrs.field(default=0.0, validator=_check_non_negative)
    per_chunk: float = attrs.field(default=0.0, validator=_check_non_negative)


def _to_slow(value: Slow | Mapping[str, Any] | None) -> Slow | None:
    if value is None or isinstance(value, Slow):
        return value
    return Slow(**value)


@attrs.frozen
class Drop:
    """Close the connection abruptly.

    Streams: after the response headers and ``after`` events, without ending the chunked body.
    Other operations: before any response byte (botocore sees a closed connection).
    """

    after: int = attrs.field(default=0, validator=_COUNT)


def _to_drop(value: Drop | Mapping[str, Any] | int | None) -> Drop | None:
    if value is None or isinstance(value, Drop):
        return value
    if isinstance(value, bool):
        raise TypeError("drop must be an object like {'after': 2} or a number of events")
    if isinstance(value, int):
        return Drop(after=value)
    return Drop(**value)


@attrs.frozen
class Rule:
    """One scripted answer, used for the requests it matches.

    Matching (all given conditions must hold): ``operation`` (snake_case or API name; None or
    ``"*"`` for any), ``model`` (a substring of the model id, or of the guardrail id for
    apply_guardrail), ``contains`` (a case-insensitive substring of the last user text) and
    ``tool_result`` (True: the request's last message carries tool results; False: it does
    not). For Agents for Amazon Bedrock Runtime operations ``model`` is the inline agent's
    ``foundationModel`` or the model ARN of retrieve_and_generate and rerank, ``agent`` a
    substring of the agent id (invoke_agent), the inline agent's ``agentName``, the knowledge
    base id (retrieve, retrieve_and_generate) or the flow id (invoke_flow), and ``contains``
    tests the question (``inputText``, the retrieval query, the flow's input document).

    Answer: ``throttle`` 429 ThrottlingException answers first, then ``error`` or ``reply``
    (None: the default reply), shaped by ``slow``, ``stream_error`` and ``drop``. ``times``
    limits the non-throttled answers (None: the rule repeats forever); an exhausted rule no
    longer matches, so later rules and the default take over.
    """

    operation: str | None = attrs.field(default=None, converter=_snake_operation)
    model: str | None = attrs.field(default=None, validator=_optional(str))
    agent: str | None = attrs.field(default=None, validator=_optional(str))
    contains: str | None = attrs.field(default=None, validator=_optional(str))
    tool_result: bool | None = attrs.field(default=None, validator=_optional(bool))
    reply: Reply | None = attrs.field(default=None, converter=_to_reply)
    throttle: int = attrs.field(default=0, validator=_COUNT)
    error: ServiceError | None = attrs.field(default=None, converter=_to_error)
    stream_error: StreamError | None = attrs.field(default=None, converter=_to_stream_error)
    slow: Slow | None = attrs.field(default=None, converter=_to_slow)
    drop: Drop | None = attrs.field(default=None, converter=_to_drop)
    times: int | None = attrs.field(default=None, validator=_optional(int))

    def __attrs_post_init__(self) -> None:
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be at least 1 (or None for always), got {self.times}")
        if self.error is not None and (self.reply, self.stream_error, self.drop) != (None,) * 3:
            raise ValueError("error excludes reply, stream_error and drop")
        if self.stream_error is not None and self.drop is not None:
            raise ValueError("stream_error and drop exclude each other")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        """A rule from its JSON form; ``ValueError`` for unknown keys or bad values."""
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from None


def _to_rules(value: Iterable[Rule | Mapping[str, Any]]) -> tuple[Rule, ...]:
    if isinstance(value, (str, Mapping)):
        raise TypeError("rules must be a list of rules")
    rules = []
    for index, item in enumerate(value):
        try:
            rules.append(item if isinstance(item, Rule) else Rule.from_dict(item))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"rule {index}: {exc}") from None
    return tuple(rules)


@attrs.frozen
class Scenario:
    """Rules tried in order for each request; the first match answers."""

    rules: tuple[Rule, ...] = attrs.field(default=(), converter=_to_rules)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Sequence[Any]) -> Scenario:
        """A scenario from ``{"rules": [...]}`` or a bare list of rules (the JSON form)."""
        if isinstance(data, Mapping):
            unknown = set(data) - {"rules"}
            if unknown:
                raise ValueError(f"unknown scenario keys: {', '.join(sorted(unknown))}")
            data = data.get("rules", [])
        return cls(rules=cast("Iterable[Rule | Mapping[str, Any]]", data))

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        """A scenario from JSON text."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """A scenario from a JSON file."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


#: What :class:`StandIn` accepts as a scenario.
ScenarioLike: TypeAlias = Scenario | Mapping[str, Any] | Sequence[Rule | Mapping[str, Any]] | None


def _to_scenario(value: ScenarioLike) -> Scenario:
    if value is None:
        return Scenario()
    if isinstance(value, Scenario):
        return value
    return Scenario.from_dict(value)


@attrs.frozen
class RecordedRequest:
    """A request the stand-in received, with what it answered."""

    #: botocore's operation name (``converse``, ...) or ``unknown`` for an unknown route.
    operation: str
    #: The decoded model id (None for apply_guardrail and unknown routes); for agent runtime
    #: operations the model the body names, if any.
    model_id: str | None
    guardrail_id: str | None
    guardrail_version: str | None
    #: The JSON body, parsed (None when empty or not JSON).
    body: Any
    raw_body: bytes = attrs.field(repr=False)
    #: Request headers, names lower-cased, without Authorization and the session token.
    headers: Mapping[str, str] = attrs.field(repr=False)
    path: str
    #: The last user text the rules' ``contains`` was tested against.
    user_text: str
    #: Index of the rule that answered, None for the default reply.
    rule: int | None
    #: ``reply``, ``throttle``, ``error``, ``stream_error``, ``drop`` or ``invalid``.
    outcome: str
    #: HTTP status answered (0 when the connection was dropped before any response).
    status: int
    request_id: str
    #: Sequence number of the TCP connection, 1 for the first; equal numbers mean keep-alive.
    connection: int
    #: Agent runtime: the agent, knowledge base or flow the request names (inline: the name).
    resource_id: str | None = None
