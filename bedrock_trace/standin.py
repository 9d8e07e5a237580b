"""A local stand-in for Amazon Bedrock Runtime: real wire protocol, scripted answers.

:class:`StandIn` is an HTTP server on 127.0.0.1 that answers botocore's REST-JSON requests for
Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream, ApplyGuardrail and
CountTokens the way Bedrock does: the same routes, headers, JSON bodies, AWS event-stream
framing for streams, and errors that botocore turns into its modeled exceptions. Nothing
contacts AWS and any credentials work. What it answers is scripted by a :class:`Scenario`, a
list of :class:`Rule` objects (or plain dicts / JSON) matched in order; without a matching
rule it echoes the user's last message, and it plays the model's part in a tool-calling agent
(it calls a tool the question names, then answers from the tool's result).

Example::

    import boto3
    from bedrock_trace.standin import StandIn

    scenario = [
        {"operation": "converse", "throttle": 2, "times": 1},
        {"operation": "converse_stream", "stream_error": {"after": 3}},
    ]
    with StandIn(scenario) as server:
        client = boto3.Session(
            aws_access_key_id="AKIAFAKE", aws_secret_access_key="fake", region_name="us-east-1"
        ).client("bedrock-runtime", endpoint_url=server.endpoint_url)
        client.converse(modelId="amazon.nova-lite-v1:0", messages=[...])  # 429, 429, then 200
        server.requests[-1].body["messages"]

From a shell: ``python -m bedrock_trace.standin --port 8765 --scenario scenario.json``, then
``export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:8765``.  See ``docs/standin.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import re
import secrets
import signal
import socket
import sys
import threading
import time
import types
import uuid
from collections.abc import Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, TypeAlias, cast
from urllib.parse import unquote

import attrs

from bedrock_trace._eventstream import chunk_event, event_message, exception_message

__all__ = [
    "OPERATIONS",
    "Drop",
    "RecordedRequest",
    "Reply",
    "Rule",
    "Scenario",
    "ScenarioLike",
    "ServiceError",
    "Slow",
    "StandIn",
    "StreamError",
    "ToolUse",
    "main",
]

_log = logging.getLogger("bedrock_trace.standin")

#: The operations the stand-in answers (botocore's snake_case names), each with its route suffix
#: after ``/model/{modelId}`` (``apply_guardrail`` has a route of its own).
OPERATIONS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "converse": "converse",
        "converse_stream": "converse-stream",
        "invoke_model": "invoke",
        "invoke_model_with_response_stream": "invoke-with-response-stream",
        "count_tokens": "count-tokens",
        "apply_guardrail": "",
    }
)
_STREAMING: Final = frozenset({"converse_stream", "invoke_model_with_response_stream"})
_BY_SUFFIX: Final = {suffix: name for name, suffix in OPERATIONS.items() if suffix}

# The model id is one path segment, percent-encoded by botocore (":" and "/" included); the
# greedy group still copes with a client that leaves "/" of an ARN unencoded.
_MODEL_ROUTE: Final = re.compile(r"^/model/(?P<model>.+)/(?P<suffix>[a-z-]+)$")
_GUARDRAIL_ROUTE: Final = re.compile(r"^/guardrail/(?P<id>[^/]+)/version/(?P<version>[^/]+)/apply$")

# HTTP status of each modeled Bedrock Runtime error (botocore's service-2.json, "error" traits).
_ERROR_STATUS: Final[Mapping[str, int]] = {
    "AccessDeniedException": 403,
    "ConflictException": 400,
    "InternalServerException": 500,
    "ModelErrorException": 424,
    "ModelNotReadyException": 429,
    "ModelStreamErrorException": 424,
    "ModelTimeoutException": 408,
    "ResourceNotFoundException": 404,
    "ServiceQuotaExceededException": 400,
    "ServiceUnavailableException": 503,
    "ThrottlingException": 429,
    "ValidationException": 400,
}
# Messages as Bedrock words them, so that logs and spans of a stand-in run look familiar.
_ERROR_MESSAGES: Final[Mapping[str, str]] = {
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "InternalServerException": "The system encountered an unexpected error during processing. "
    "Try your request again.",
    "ModelErrorException": "The model encountered an error processing the request.",
    "ModelNotReadyException": "The model is not ready to serve inference requests.",
    "ModelStreamErrorException": "The model encountered an error while streaming the response.",
    "ModelTimeoutException": "Model has timed out in processing the request. "
    "Try your request again.",
    "ResourceNotFoundException": "The requested resource could not be found.",
    "ServiceQuotaExceededException": "Your request exceeds the service quota for your account.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ValidationException": "The provided request is not valid.",
}
_MALFORMED = "Malformed input request, please reformat your input and try again."
_ERROR_TYPE_SUFFIX: Final = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_EVENTSTREAM: Final = "application/vnd.amazon.eventstream"
_JSON: Final = "application/json"
# Request headers that carry credentials; never recorded.
_SECRET_HEADERS: Final = frozenset({"authorization", "x-amz-security-token"})

_JsonObject: TypeAlias = dict[str, Any]


# --- scenario ------------------------------------------------------------------------------


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


def _snake_operation(value: str | None) -> str | None:
    if value is None or value in ("", "*"):
        return None
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", value).replace("-", "_").lower()
    if name not in OPERATIONS:
        known = ", ".join(sorted(OPERATIONS))
        raise ValueError(f"unknown operation {value!r}; expected one of {known} (or '*')")
    return name


@attrs.frozen
class Rule:
    """One scripted answer, used for the requests it matches.

    Matching (all given conditions must hold): ``operation`` (snake_case or API name; None or
    ``"*"`` for any), ``model`` (a substring of the model id, or of the guardrail id for
    apply_guardrail), ``contains`` (a case-insensitive substring of the last user text) and
    ``tool_result`` (True: the request's last message carries tool results; False: it does
    not).

    Answer: ``throttle`` 429 ThrottlingException answers first, then ``error`` or ``reply``
    (None: the default reply), shaped by ``slow``, ``stream_error`` and ``drop``. ``times``
    limits the non-throttled answers (None: the rule repeats forever); an exhausted rule no
    longer matches, so later rules and the default take over.
    """

    operation: str | None = attrs.field(default=None, converter=_snake_operation)
    model: str | None = attrs.field(default=None, validator=_optional(str))
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
    #: The decoded model id (None for apply_guardrail and unknown routes).
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


# --- reading requests ----------------------------------------------------------------------


@attrs.frozen
class _Tool:
    name: str
    schema: Mapping[str, Any]


@attrs.frozen
class _View:
    """What the default answer needs from any of the request formats."""

    user_text: str = ""
    tools: tuple[_Tool, ...] = ()
    #: (tool name, result text) of the tool results in the last message.
    tool_results: tuple[tuple[str, str], ...] = ()
    text_chars: int = 0


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _text_chars(value: Any) -> int:
    """Characters of all the strings in a JSON document (for token estimates)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(_text_chars(item) for item in value.values())
    if isinstance(value, list):
        return sum(_text_chars(item) for item in value)
    return 0


def _block_text(block: Any) -> str:
    """Text of a content block in the Converse, Anthropic or OpenAI form."""
    if isinstance(block, str):
        return block
    block = _mapping(block)
    if block.get("type", "text") == "text":
        return _str(block.get("text"))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(_block_text(block) for block in _list(content))


def _result_text(content: Any) -> str:
    """The text of a tool result's content (string, text blocks or JSON blocks)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in _list(content):
        block = _mapping(block)
        if isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif "json" in block:
            parts.append(json.dumps(block["json"], ensure_ascii=False))
    return " ".join(parts)


def _tools_of(body: Mapping[str, Any]) -> tuple[_Tool, ...]:
    tools = []
    converse_tools = _list(_mapping(body.get("toolConfig")).get("tools"))
    for tool in converse_tools + _list(body.get("tools")):
        tool = _mapping(tool)
        if "toolSpec" in tool:  # Converse and Nova
            spec = _mapping(tool["toolSpec"])
            schema = _mapping(_mapping(spec.get("inputSchema")).get("json"))
        elif "function" in tool:  # OpenAI chat completions
            spec = _mapping(tool["function"])
            schema = _mapping(spec.get("parameters"))
        else:  # Anthropic
            spec = tool
            schema = _mapping(tool.get("input_schema"))
        if _str(spec.get("name")):
            tools.append(_Tool(spec["name"], schema))
    return tuple(tools)


def _tool_names(messages: list[Any]) -> dict[str, str]:
    """Tool call id -> tool name, from the assistant's earlier tool calls."""
    names = {}
    for message in messages:
        message = _mapping(message)
        for call in _list(message.get("tool_calls")):  # OpenAI
            call = _mapping(call)
            names[_str(call.get("id"))] = _str(_mapping(call.get("function")).get("name"))
        for block in _list(message.get("content")):
            block = _mapping(block)
            if "toolUse" in block:  # Converse and Nova
                use = _mapping(block["toolUse"])
                names[_str(use.get("toolUseId"))] = _str(use.get("name"))
            elif block.get("type") == "tool_use":  # Anthropic
                names[_str(block.get("id"))] = _str(block.get("name"))
    return names


def _messages_view(body: Mapping[str, Any]) -> _View:
    messages = _list(body.get("messages"))
    user_text = ""
    for message in reversed(messages):
        message = _mapping(message)
        if message.get("role") == "user":
            user_text = _content_text(message.get("content"))
            if user_text:
                break
    results: list[tuple[str, str]] = []
    names = _tool_names(messages)
    # OpenAI sends each tool result as a message of its own: take the trailing run of them.
    for message in reversed(messages):
        message = _mapping(message)
        if message.get("role") != "tool":
            break
        tool_id = _str(message.get("tool_call_id"))
        results.insert(0, (names.get(tool_id, ""), _result_text(message.get("content"))))
    if not results and messages:
        for block in _list(_mapping(messages[-1]).get("content")):
            block = _mapping(block)
            if "toolResult" in block:
                result = _mapping(block["toolResult"])
                tool_id = _str(result.get("toolUseId"))
                results.append((names.get(tool_id, ""), _result_text(result.get("content"))))
            elif block.get("type") == "tool_result":
                tool_id = _str(block.get("tool_use_id"))
                results.append((names.get(tool_id, ""), _result_text(block.get("content"))))
    return _View(user_text, _tools_of(body), tuple(results), _text_chars(body))


_LLAMA3_USER: Final = re.compile(
    r"<\|start_header_id\|>user<\|end_header_id\|>\s*(.*?)\s*(?:<\|eot_id\|>|$)", re.S
)
_INST: Final = re.compile(r"\[INST\]\s*(.*?)\s*\[/INST\]", re.S)


def _prompt_user_text(prompt: str) -> str:
    """The last user turn of a raw prompt (Llama 3 or [INST] templates), else the prompt."""
    for pattern in (_LLAMA3_USER, _INST):
        turns = pattern.findall(prompt)
        if turns:
            return str(turns[-1])
    return prompt.strip()


def _view_of(operation: str, body: Any) -> _View:
    body = _mapping(body)
    if operation == "apply_guardrail":
        texts = [
            _str(_mapping(_mapping(item).get("text")).get("text"))
            for item in _list(body.get("content"))
        ]
        return _View(user_text=" ".join(t for t in texts if t), text_chars=_text_chars(body))
    if operation == "count_tokens":
        request = _mapping(body.get("input"))
        if "converse" in request:
            return _messages_view(_mapping(request["converse"]))
        try:
            inner = json.loads(_str(_mapping(request.get("invokeModel")).get("body")) or "{}")
        except ValueError:
            inner = {}
        return _view_of("invoke_model", inner)
    if "messages" in body:
        return _messages_view(body)
    prompt = _str(body.get("inputText")) or _str(body.get("prompt"))
    return _View(user_text=_prompt_user_text(prompt), text_chars=_text_chars(body))


# --- the default answer --------------------------------------------------------------------

# Words of a tool name that say nothing about its subject ("get_weather" is about "weather").
_VERBS: Final = frozenset(
    {"get", "set", "fetch", "find", "lookup", "look", "search", "query", "read", "list", "the"}
    | {"for", "and", "tool", "current", "check", "retrieve", "show", "call", "run", "api"}
)
_PLACE: Final = re.compile(
    r"\b(?:in|for|at|of|about|near|from|to)\s+(?P<name>[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*)"
)


def _name_words(name: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z0-9])([A-Z])", r" \1", name)
    return [w for w in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if len(w) > 2]


def _pick_tool(text: str, tools: Sequence[_Tool]) -> _Tool | None:
    """The first tool whose name's subject word appears in the text ("weather")."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    for tool in tools:
        subjects = [w for w in _name_words(tool.name) if w not in _VERBS]
        for subject in subjects:
            stem = subject.rstrip("s") or subject
            if any(word.startswith(stem) for word in words):
                return tool
    return None


def _guess_argument(text: str, name: str, schema: Mapping[str, Any]) -> Any:
    """A plausible value for one tool argument, read from the user's text."""
    kind = schema.get("type")
    enum = _list(schema.get("enum"))
    if enum:
        lowered = text.lower()
        return next((v for v in enum if isinstance(v, str) and v.lower() in lowered), enum[0])
    if kind in ("integer", "number"):
        match = re.search(r"-?\d+(?:\.\d+)?", text)
        if match is None:
            return 1
        number = float(match.group())
        return int(number) if kind == "integer" or number.is_integer() else number
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    place = _PLACE.search(text)
    if place:
        return place.group("name")
    # A capitalised word that does not start the sentence is likely the thing asked about.
    capitalised = re.findall(r"(?<=[a-z,]\s)([A-Z][\w'-]+)", text)
    if capitalised:
        return capitalised[-1]
    return text.strip().rstrip("?.!") or name


def _tool_input(text: str, tool: _Tool) -> dict[str, Any]:
    properties = _mapping(tool.schema.get("properties"))
    required = [name for name in _list(tool.schema.get("required")) if isinstance(name, str)]
    names = required or list(properties)[:1]
    return {name: _guess_argument(text, name, _mapping(properties.get(name))) for name in names}


def _default_content(view: _View) -> tuple[str | None, tuple[ToolUse, ...]]:
    """Echo the user, call a tool the question names, or answer from tool results."""
    if view.tool_results:
        answers = [
            f"Here is what {name or 'the tool'} returned: {text}"
            for name, text in view.tool_results
        ]
        return " ".join(answers), ()
    tool = _pick_tool(view.user_text, view.tools)
    if tool is not None:
        return None, (ToolUse(tool.name, _tool_input(view.user_text, tool)),)
    return f"You said: {view.user_text}" if view.user_text else "Hello!", ()


# --- answers -------------------------------------------------------------------------------


@attrs.frozen
class _Call:
    name: str
    input: Mapping[str, Any]
    tool_use_id: str | None

    def id(self, prefix: str) -> str:
        return self.tool_use_id or prefix + secrets.token_hex(12)


@attrs.frozen
class _Answer:
    """A reply with every field decided."""

    text: str | None
    calls: tuple[_Call, ...]
    stop_reason: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    latency_ms: int
    first_byte_ms: int
    pieces: int | None
    guardrail_action: str
    body: Mapping[str, Any] | None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def text_pieces(self) -> list[str]:
        """``text`` split for streaming: ``pieces`` parts, or one per word."""
        text = self.text or ""
        if self.pieces:
            size = max(1, math.ceil(len(text) / self.pieces))
            return [text[i : i + size] for i in range(0, len(text), size)] or [""]
        return re.findall(r"\s*\S+\s*", text) or [text]


def _estimate_tokens(chars: int) -> int:
    # About four characters a token for English text, as the Bedrock docs estimate.
    return max(1, math.ceil(chars / 4))


def _answer(reply: Reply | None, view: _View, elapsed_ms: int, slow: Slow | None) -> _Answer:
    reply = reply or Reply()
    if reply.text is not None or reply.tool_uses:
        text, tool_uses = reply.text, reply.tool_uses
    else:
        text, tool_uses = _default_content(view)
    calls = tuple(_Call(t.name, dict(t.input), t.tool_use_id) for t in tool_uses)
    output_chars = len(text or "") + sum(len(json.dumps(c.input)) for c in calls)
    header_delay = int((slow.before_headers if slow else 0.0) * 1000)
    chunk_delay = int((slow.per_chunk if slow else 0.0) * 1000)
    first_byte = elapsed_ms + header_delay + chunk_delay
    latency = reply.latency_ms
    if latency is None:
        # What a client would measure: the time taken so far plus the delays to come.
        latency = first_byte + chunk_delay * (len(re.findall(r"\S+", text or "")) + 4)
    return _Answer(
        text=text,
        calls=calls,
        stop_reason=reply.stop_reason or ("tool_use" if calls else "end_turn"),
        input_tokens=(
            reply.input_tokens
            if reply.input_tokens is not None
            else _estimate_tokens(view.text_chars)
        ),
        output_tokens=(
            reply.output_tokens
            if reply.output_tokens is not None
            else _estimate_tokens(output_chars)
        ),
        cache_read_tokens=reply.cache_read_tokens,
        cache_write_tokens=reply.cache_write_tokens,
        latency_ms=max(1, latency),
        first_byte_ms=max(1, min(first_byte, latency)),
        pieces=reply.pieces,
        guardrail_action=reply.guardrail_action or "NONE",
        body=reply.body,
    )


# --- Converse and ConverseStream -----------------------------------------------------------


def _converse_usage(answer: _Answer) -> _JsonObject:
    usage: _JsonObject = {
        "inputTokens": answer.input_tokens,
        "outputTokens": answer.output_tokens,
        "totalTokens": answer.total_tokens,
    }
    if answer.cache_read_tokens is not None:
        usage["cacheReadInputTokens"] = answer.cache_read_tokens
    if answer.cache_write_tokens is not None:
        usage["cacheWriteInputTokens"] = answer.cache_write_tokens
    return usage


def _converse_content(answer: _Answer, prefix: str) -> list[_JsonObject]:
    content: list[_JsonObject] = []
    if answer.text is not None:
        content.append({"text": answer.text})
    content.extend(
        {"toolUse": {"toolUseId": c.id(prefix), "name": c.name, "input": dict(c.input)}}
        for c in answer.calls
    )
    return content


def _converse_body(answer: _Answer) -> _JsonObject:
    return {
        "output": {
            "message": {"role": "assistant", "content": _converse_content(answer, "tooluse_")}
        },
        "stopReason": answer.stop_reason,
        "usage": _converse_usage(answer),
        "metrics": {"latencyMs": answer.latency_ms},
    }


def _converse_events(answer: _Answer, prefix: str = "tooluse_") -> list[_JsonObject]:
    """ConverseStream events as ``{event type: payload}``; Nova's stream chunks are the same."""
    events: list[_JsonObject] = [{"messageStart": {"role": "assistant"}}]
    index = 0
    if answer.text is not None:
        # Bedrock sends no contentBlockStart for text blocks, only for tool use.
        for piece in answer.text_pieces():
            events.append(
                {"contentBlockDelta": {"delta": {"text": piece}, "contentBlockIndex": index}}
            )
        events.append({"contentBlockStop": {"contentBlockIndex": index}})
        index += 1
    for call in answer.calls:
        start = {"toolUse": {"toolUseId": call.id(prefix), "name": call.name}}
        events.append({"contentBlockStart": {"start": start, "contentBlockIndex": index}})
        delta = {"toolUse": {"input": json.dumps(call.input, ensure_ascii=False)}}
        events.append({"contentBlockDelta": {"delta": delta, "contentBlockIndex": index}})
        events.append({"contentBlockStop": {"contentBlockIndex": index}})
        index += 1
    events.append({"messageStop": {"stopReason": answer.stop_reason}})
    events.append(
        {
            "metadata": {
                "usage": _converse_usage(answer),
                "metrics": {"latencyMs": answer.latency_ms},
            }
        }
    )
    return events


# --- InvokeModel bodies, per model family --------------------------------------------------

_GEO_PREFIXES: Final = frozenset({"us", "eu", "apac", "global", "us-gov", "ca", "jp", "au", "uk"})


def _base_model(model_id: str) -> str:
    """``anthropic.claude-...`` from a plain id, an inference profile id or an ARN."""
    if model_id.startswith("arn:"):
        model_id = model_id.split(":", 5)[-1].split("/")[-1]
    head, sep, rest = model_id.partition(".")
    return rest if sep and head in _GEO_PREFIXES and "." in rest else model_id


def _dialect(model_id: str, body: Mapping[str, Any]) -> str:
    """The body format to answer invoke_model in: by model id, else by the request's shape."""
    base = _base_model(model_id)
    for prefix, dialect in (
        ("anthropic.", "anthropic"),
        ("amazon.nova", "nova"),
        ("amazon.titan-text", "titan"),
        ("meta.llama", "llama"),
    ):
        if base.startswith(prefix):
            return dialect
    if "anthropic_version" in body:
        return "anthropic"
    if "inputText" in body:
        return "titan"
    if "messages" in body:
        if {"schemaVersion", "inferenceConfig", "toolConfig"} & set(body):
            return "nova"
        if base.startswith(("mistral.", "openai.", "deepseek.", "ai21.")):
            return "openai"
        return "anthropic"
    return "llama" if "prompt" in body else "anthropic"


_ANTHROPIC_STOP: Final = {"end_turn", "tool_use", "max_tokens", "stop_sequence", "pause_turn"}
_TITAN_STOP: Final = {"end_turn": "FINISH", "max_tokens": "LENGTH", "tool_use": "FINISH"}
_LLAMA_STOP: Final = {"end_turn": "stop", "max_tokens": "length", "tool_use": "stop"}
_OPENAI_STOP: Final = {"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def _anthropic_model_name(model_id: str) -> str:
    name = _base_model(model_id).removeprefix("anthropic.")
    return re.sub(r"-v\d+(?::\d+)?$", "", name)


def _anthropic_message(answer: _Answer, model_id: str, streaming: bool) -> _JsonObject:
    content: list[_JsonObject] = []
    if answer.text is not None and not streaming:
        content.append({"type": "text", "text": answer.text})
    if not streaming:
        content.extend(
            {"type": "tool_use", "id": c.id("toolu_bdrk_"), "name": c.name, "input": c.input}
            for c in answer.calls
        )
    usage: _JsonObject = {
        "input_tokens": answer.input_tokens,
        "output_tokens": 1 if streaming else answer.output_tokens,
    }
    if answer.cache_read_tokens is not None:
        usage["cache_read_input_tokens"] = answer.cache_read_tokens
    if answer.cache_write_tokens is not None:
        usage["cache_creation_input_tokens"] = answer.cache_write_tokens
    return {
        "id": "msg_bdrk_" + secrets.token_hex(12),
        "type": "message",
        "role": "assistant",
        "model": _anthropic_model_name(model_id),
        "content": content,
        "stop_reason": None if streaming else answer.stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _anthropic_chunks(answer: _Answer, model_id: str) -> list[_JsonObject]:
    chunks: list[_JsonObject] = [
        {"type": "message_start", "message": _anthropic_message(answer, model_id, True)}
    ]
    index = 0
    if answer.text is not None:
        block: _JsonObject = {"type": "text", "text": ""}
        chunks.append({"type": "content_block_start", "index": index, "content_block": block})
        for piece in answer.text_pieces():
            delta = {"type": "text_delta", "text": piece}
            chunks.append({"type": "content_block_delta", "index": index, "delta": delta})
        chunks.append({"type": "content_block_stop", "index": index})
        index += 1
    for call in answer.calls:
        block = {"type": "tool_use", "id": call.id("toolu_bdrk_"), "name": call.name, "input": {}}
        chunks.append({"type": "content_block_start", "index": index, "content_block": block})
        partial = {"type": "input_json_delta", "partial_json": json.dumps(call.input)}
        chunks.append({"type": "content_block_delta", "index": index, "delta": partial})
        chunks.append({"type": "content_block_stop", "index": index})
        index += 1
    chunks.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": answer.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": answer.output_tokens},
        }
    )
    chunks.append({"type": "message_stop"})
    return chunks


def _nova_body(answer: _Answer) -> _JsonObject:
    return {
        "output": {"message": {"role": "assistant", "content": _converse_content(answer, "")}},
        "stopReason": answer.stop_reason,
        "usage": {
            "inputTokens": answer.input_tokens,
            "outputTokens": answer.output_tokens,
            "totalTokens": answer.total_tokens,
            "cacheReadInputTokenCount": answer.cache_read_tokens or 0,
            "cacheWriteInputTokenCount": answer.cache_write_tokens or 0,
        },
    }


def _nova_chunks(answer: _Answer) -> list[_JsonObject]:
    chunks = _converse_events(answer, prefix="")
    metadata = chunks[-1]["metadata"]
    metadata["usage"] = {
        "inputTokens": answer.input_tokens,
        "outputTokens": answer.output_tokens,
    }
    metadata["metrics"], metadata["trace"] = {}, {}
    return chunks


def _openai_body(answer: _Answer) -> _JsonObject:
    message: _JsonObject = {"role": "assistant", "content": answer.text}
    if answer.calls:
        message["tool_calls"] = [
            {
                "id": c.id("call_"),
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.input)},
            }
            for c in answer.calls
        ]
    return {
        "id": "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion",
        "created": int(time.time()),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _OPENAI_STOP.get(answer.stop_reason, answer.stop_reason),
            }
        ],
        "usage": {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.total_tokens,
        },
    }


def _openai_chunks(answer: _Answer) -> list[_JsonObject]:
    chunks: list[_JsonObject] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}}]}
        for piece in (answer.text_pieces() if answer.text is not None else [])
    ]
    for position, call in enumerate(answer.calls):
        function = {"name": call.name, "arguments": json.dumps(call.input)}
        tool_call = {"index": position, "id": call.id("call_"), "function": function}
        chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [tool_call]}}]})
    finish = _OPENAI_STOP.get(answer.stop_reason, answer.stop_reason)
    chunks.append(
        {
            "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": answer.input_tokens,
                "completion_tokens": answer.output_tokens,
                "total_tokens": answer.total_tokens,
            },
        }
    )
    return chunks


def _titan_body(answer: _Answer) -> _JsonObject:
    return {
        "inputTextTokenCount": answer.input_tokens,
        "results": [
            {
                "tokenCount": answer.output_tokens,
                "outputText": answer.text or "",
                "completionReason": _TITAN_STOP.get(answer.stop_reason, "FINISH"),
            }
        ],
    }


def _titan_chunks(answer: _Answer) -> list[_JsonObject]:
    pieces = answer.text_pieces()
    chunks: list[_JsonObject] = []
    for position, piece in enumerate(pieces):
        last = position == len(pieces) - 1
        chunks.append(
            {
                "outputText": piece,
                "index": 0,
                "totalOutputTextTokenCount": answer.output_tokens if last else None,
                "completionReason": (
                    _TITAN_STOP.get(answer.stop_reason, "FINISH") if last else None
                ),
                "inputTextTokenCount": answer.input_tokens if position == 0 else None,
            }
        )
    return chunks


def _llama_body(answer: _Answer) -> _JsonObject:
    return {
        "generation": answer.text or "",
        "prompt_token_count": answer.input_tokens,
        "generation_token_count": answer.output_tokens,
        "stop_reason": _LLAMA_STOP.get(answer.stop_reason, answer.stop_reason),
    }


def _llama_chunks(answer: _Answer) -> list[_JsonObject]:
    pieces = answer.text_pieces()
    chunks: list[_JsonObject] = []
    for position, piece in enumerate(pieces):
        last = position == len(pieces) - 1
        chunks.append(
            {
                "generation": piece,
                "prompt_token_count": answer.input_tokens if position == 0 else None,
                "generation_token_count": (
                    answer.output_tokens if last else min(position + 1, answer.output_tokens)
                ),
                "stop_reason": _LLAMA_STOP.get(answer.stop_reason, "stop") if last else None,
            }
        )
    return chunks


def _invoke_body(dialect: str, answer: _Answer, model_id: str) -> _JsonObject:
    if dialect == "nova":
        return _nova_body(answer)
    if dialect == "titan":
        return _titan_body(answer)
    if dialect == "llama":
        return _llama_body(answer)
    if dialect == "openai":
        return _openai_body(answer)
    return _anthropic_message(answer, model_id, streaming=False)


def _invoke_chunks(dialect: str, answer: _Answer, model_id: str) -> list[_JsonObject]:
    if dialect == "nova":
        chunks = _nova_chunks(answer)
    elif dialect == "titan":
        chunks = _titan_chunks(answer)
    elif dialect == "llama":
        chunks = _llama_chunks(answer)
    elif dialect == "openai":
        chunks = _openai_chunks(answer)
    else:
        chunks = _anthropic_chunks(answer, model_id)
    # Bedrock adds its own metrics to the model's last chunk.
    chunks[-1]["amazon-bedrock-invocationMetrics"] = {
        "inputTokenCount": answer.input_tokens,
        "outputTokenCount": answer.output_tokens,
        "invocationLatency": answer.latency_ms,
        "firstByteLatency": answer.first_byte_ms,
    }
    return chunks


# --- ApplyGuardrail and CountTokens --------------------------------------------------------


def _guardrail_body(answer: _Answer, view: _View) -> _JsonObject:
    units = max(1, math.ceil(len(view.user_text) / 1000))
    usage = {
        "topicPolicyUnits": units,
        "contentPolicyUnits": units,
        "wordPolicyUnits": units,
        "sensitiveInformationPolicyUnits": units,
        "sensitiveInformationPolicyFreeUnits": 0,
        "contextualGroundingPolicyUnits": 0,
    }
    coverage = {"textCharacters": {"guarded": len(view.user_text), "total": len(view.user_text)}}
    assessment: _JsonObject = {
        "invocationMetrics": {
            "guardrailProcessingLatency": answer.latency_ms,
            "usage": usage,
            "guardrailCoverage": coverage,
        }
    }
    body: _JsonObject = {
        "usage": usage,
        "action": answer.guardrail_action,
        "outputs": [],
        "assessments": [assessment],
        "guardrailCoverage": coverage,
    }
    if answer.guardrail_action == "GUARDRAIL_INTERVENED":
        body["actionReason"] = "Guardrail blocked."
        body["outputs"] = [{"text": answer.text or "Sorry, the model cannot answer this."}]
        topic = {"name": "Blocked topic", "type": "DENY", "action": "BLOCKED", "detected": True}
        assessment["topicPolicy"] = {"topics": [topic]}
    return body


# --- the server ----------------------------------------------------------------------------


@attrs.frozen
class _Route:
    operation: str
    model_id: str | None = None
    guardrail_id: str | None = None
    guardrail_version: str | None = None


def _route(method: str, path: str) -> _Route | None:
    path = path.split("?", 1)[0]
    if method != "POST":
        return None
    match = _MODEL_ROUTE.match(path)
    if match and match["suffix"] in _BY_SUFFIX:
        return _Route(_BY_SUFFIX[match["suffix"]], model_id=unquote(match["model"]))
    match = _GUARDRAIL_ROUTE.match(path)
    if match:
        return _Route(
            "apply_guardrail",
            guardrail_id=unquote(match["id"]),
            guardrail_version=unquote(match["version"]),
        )
    return None


@attrs.frozen
class _Decision:
    rule_index: int | None
    rule: Rule | None
    throttled: bool


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _Server(ThreadingHTTPServer):
    """The HTTP server, with a reference back to its :class:`StandIn`."""

    daemon_threads = True
    standin: StandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print to stderr; an unexpected error is a bug worth a traceback.
        _log.exception("Bedrock stand-in: error while handling a request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1, so it serves requests until the client closes it."""

    protocol_version = "HTTP/1.1"

    connection_number = 0

    @property
    def _standin(self) -> StandIn:
        return cast(_Server, self.server).standin

    def setup(self) -> None:
        super().setup()
        # Stream events are small writes; without this, Nagle's algorithm could hold them back
        # and blur the per-chunk delays a test measures.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection_number = self._standin._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._standin._untrack(self.connection)

    def version_string(self) -> str:
        """The ``Server`` header: says what answered, without the Python version."""
        return "bedrock-trace-standin"

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s - %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        """Answer one request."""
        try:
            self._standin._respond(self)
        except OSError as exc:
            # The client went away (or we dropped it on purpose): nothing left to answer.
            _log.debug("Bedrock stand-in: connection ended: %s", exc)
            self.close_connection = True

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

    def read_body(self) -> bytes:
        """The request body, by Content-Length or chunked transfer encoding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_head(self, status: int, headers: Mapping[str, str]) -> None:
        """Status line and headers (plus Date and Server)."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def send_json(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """A complete response with a Content-Length body."""
        self.send_head(status, {**headers, "Content-Length": str(len(body))})
        self.wfile.write(body)

    def send_chunk(self, data: bytes) -> None:
        """One chunk of a chunked body, written at once (one event-stream message)."""
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")

    def end_chunks(self) -> None:
        """The last chunk: the body is complete and the connection can be reused."""
        self.wfile.write(b"0\r\n\r\n")

    def drop(self) -> None:
        """Close the connection abruptly, mid-response."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # already gone
            self.connection.shutdown(socket.SHUT_RDWR)


class StandIn:
    """A local Bedrock Runtime endpoint answering from a :class:`Scenario`.

    Start it with ``with StandIn(...) as server:`` or :meth:`start`/:meth:`stop`; point a
    client at :attr:`endpoint_url`. ``port=0`` picks a free port. Requests received are in
    :attr:`requests`. Rules' ``times`` and ``throttle`` counters belong to the server and
    start afresh with :meth:`reset`.
    """

    def __init__(
        self, scenario: ScenarioLike = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._scenario = _to_scenario(scenario)
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._answered = [0] * len(self._scenario.rules)
        self._throttled = [0] * len(self._scenario.rules)
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._connection_count = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> StandIn:
        """Bind and serve in a background thread; returns self. ``OSError`` if the port is taken."""
        if self._server is not None:
            raise RuntimeError("the stand-in is already running")
        self._stopping.clear()
        server = _Server((self._host, self._port), _Handler, bind_and_activate=True)
        server.standin = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"bedrock-standin-{self.port}",
            daemon=True,
        )
        self._thread.start()
        _log.info("Bedrock stand-in listening on %s", self.endpoint_url)
        return self

    def stop(self) -> None:
        """Stop serving and close every connection, idle keep-alive ones included."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            # Handler threads waiting for the next request on a kept-alive connection wake up
            # with end-of-file and exit. OSError: the client closed it already.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    @property
    def host(self) -> str:
        """The address listened on."""
        return self._host

    @property
    def port(self) -> int:
        """The port listened on (the one picked, once started with port 0)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._port

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``, for ``client(..., endpoint_url=...)``."""
        if self._server is None:
            raise RuntimeError("the stand-in is not running; start() it first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def environ(self) -> dict[str, str]:
        """Environment variables that point boto3 at the stand-in, with dummy credentials.

        ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` affects only bedrock-runtime clients.
        """
        return {
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "AKIAFAKESTANDIN",
            "AWS_SECRET_ACCESS_KEY": "fake-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    # --- scenario and records ---

    @property
    def scenario(self) -> Scenario:
        """The rules in use."""
        return self._scenario

    def add(self, *rules: Rule | Mapping[str, Any]) -> None:
        """Append rules to the scenario (they are tried after the existing ones)."""
        added = _to_rules(rules)
        with self._lock:
            self._scenario = Scenario(self._scenario.rules + added)
            self._answered += [0] * len(added)
            self._throttled += [0] * len(added)

    def reset(self, scenario: ScenarioLike = None) -> None:
        """Forget the requests and the rules' counters; with a scenario, use it from now on."""
        new = _to_scenario(scenario) if scenario is not None else self._scenario
        with self._lock:
            self._scenario = new
            self._answered = [0] * len(new.rules)
            self._throttled = [0] * len(new.rules)
            self._requests.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, operation: str) -> list[RecordedRequest]:
        """The requests received for one operation (snake_case or API name)."""
        name = _snake_operation(operation)
        return [r for r in self.requests if r.operation == name]

    # --- serving (called from handler threads) ---

    def _track(self, connection: socket.socket) -> int:
        with self._lock:
            self._connections.add(connection)
            self._connection_count += 1
            return self._connection_count

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _decide(self, operation: str, model_id: str | None, view: _View) -> _Decision:
        with self._lock:
            for index, rule in enumerate(self._scenario.rules):
                if not _matches(rule, operation, model_id, view):
                    continue
                if rule.times is not None and self._answered[index] >= rule.times:
                    continue
                if self._throttled[index] < rule.throttle:
                    self._throttled[index] += 1
                    return _Decision(index, rule, throttled=True)
                self._answered[index] += 1
                return _Decision(index, rule, throttled=False)
        return _Decision(None, None, throttled=False)

    def _record(self, request: _Request, rule: int | None, outcome: str, status: int) -> None:
        route = request.route
        recorded = RecordedRequest(
            operation=route.operation if route else "unknown",
            model_id=route.model_id if route else None,
            guardrail_id=route.guardrail_id if route else None,
            guardrail_version=route.guardrail_version if route else None,
            body=request.body,
            raw_body=request.raw_body,
            headers=request.headers,
            path=request.path,
            user_text=request.view.user_text,
            rule=rule,
            outcome=outcome,
            status=status,
            request_id=request.request_id,
            connection=request.connection,
        )
        with self._lock:
            self._requests.append(recorded)
        _log.info(
            "%s %s -> %s %s (%s)",
            recorded.operation,
            recorded.model_id or recorded.guardrail_id or recorded.path,
            status,
            outcome,
            "default" if rule is None else f"rule {rule}",
        )

    def _sleep(self, seconds: float) -> None:
        # Interrupted by stop(), so that a slow scenario never holds up shutdown.
        if seconds > 0 and self._stopping.wait(seconds):
            raise ConnectionAbortedError("the stand-in is stopping")

    def _respond(self, handler: _Handler) -> None:
        request = _Request.read(handler)
        route = request.route
        if route is None:
            self._record(request, None, "invalid", 404)
            where = f"{handler.command} {request.path.split('?', 1)[0]}"
            error = ServiceError("UnknownOperationException", f"No operation at {where}", 404)
            _send_error(handler, request.request_id, error)
            return
        if request.raw_body and request.body is None:
            self._record(request, None, "invalid", 400)
            _send_error(
                handler, request.request_id, ServiceError("ValidationException", _MALFORMED)
            )
            return

        # A guardrail id stands in for the model id in rules' ``model`` condition.
        decision = self._decide(route.operation, route.model_id or route.guardrail_id, request.view)
        rule, index = decision.rule, decision.rule_index
        slow = rule.slow if rule else None
        self._sleep(slow.before_headers if slow else 0.0)
        if decision.throttled:
            self._record(request, index, "throttle", 429)
            _send_error(handler, request.request_id, ServiceError("ThrottlingException"))
            return
        if rule is not None and rule.error is not None:
            self._record(request, index, "error", rule.error.http_status)
            _send_error(handler, request.request_id, rule.error)
            return
        if rule is not None and rule.drop is not None and route.operation not in _STREAMING:
            self._record(request, index, "drop", 0)
            handler.drop()
            return
        elapsed = int((time.monotonic() - request.started) * 1000)
        answer = _answer(rule.reply if rule else None, request.view, elapsed, slow)
        streaming = route.operation in _STREAMING
        try:
            messages = _stream_messages(route, request.body, answer) if streaming else []
            response = None if streaming else _reply_response(route, request, answer)
        except (ValueError, TypeError) as exc:
            # A reply that cannot be encoded (a tool input that is not JSON-serializable, say):
            # the client gets an InternalServerException naming it rather than a hung call.
            _log.warning("Bedrock stand-in: cannot answer %s: %s", route.operation, exc)
            self._record(request, index, "invalid", 500)
            error = ServiceError("InternalServerException", f"Bedrock stand-in: {exc}")
            _send_error(handler, request.request_id, error)
            return
        if response is not None:
            headers, document = response
            self._record(request, index, "reply", 200)
            handler.send_json(200, {**headers, "x-amzn-requestid": request.request_id}, document)
            return
        self._stream(handler, request, index, rule, messages)

    def _stream(
        self,
        handler: _Handler,
        request: _Request,
        index: int | None,
        rule: Rule | None,
        messages: list[bytes],
    ) -> None:
        """Send event-stream messages as chunks, one write each, with the rule's faults."""
        headers = {
            "Content-Type": _EVENTSTREAM,
            "Transfer-Encoding": "chunked",
            "x-amzn-requestid": request.request_id,
        }
        if request.route is not None and request.route.operation != "converse_stream":
            headers["X-Amzn-Bedrock-Content-Type"] = _JSON
        per_chunk = rule.slow.per_chunk if rule and rule.slow else 0.0
        stream_error = rule.stream_error if rule else None
        drop = rule.drop if rule else None
        if stream_error is not None:
            messages = messages[: stream_error.after]
            messages.append(exception_message(stream_error.event_type, stream_error.text))
            outcome = "stream_error"
        elif drop is not None:
            messages = messages[: drop.after]
            outcome = "drop"
        else:
            outcome = "reply"
        self._record(request, index, outcome, 200)
        handler.send_head(200, headers)
        for message in messages:
            self._sleep(per_chunk)
            handler.send_chunk(message)
        if drop is not None:
            handler.drop()
        else:
            handler.end_chunks()


@attrs.frozen
class _Request:
    """A request as read off the connection."""

    route: _Route | None
    path: str
    raw_body: bytes
    body: Any
    headers: dict[str, str]
    view: _View
    request_id: str
    connection: int
    started: float

    @classmethod
    def read(cls, handler: _Handler) -> _Request:
        started = time.monotonic()
        raw = handler.read_body()
        route = _route(handler.command, handler.path)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        return cls(
            route=route,
            path=handler.path,
            raw_body=raw,
            body=body,
            headers={
                name.lower(): value
                for name, value in handler.headers.items()
                if name.lower() not in _SECRET_HEADERS
            },
            view=_view_of(route.operation, body) if route else _View(),
            request_id=str(uuid.uuid4()),
            connection=handler.connection_number,
            started=started,
        )


def _matches(rule: Rule, operation: str, model_id: str | None, view: _View) -> bool:
    if rule.operation is not None and rule.operation != operation:
        return False
    if rule.model is not None and rule.model not in (model_id or ""):
        return False
    if rule.contains is not None and rule.contains.lower() not in view.user_text.lower():
        return False
    return rule.tool_result is None or rule.tool_result == bool(view.tool_results)


def _send_error(handler: _Handler, request_id: str, error: ServiceError) -> None:
    """An AWS REST-JSON error: status, ``x-amzn-errortype`` and a ``message`` body."""
    headers = {
        "Content-Type": _JSON,
        "x-amzn-requestid": request_id,
        "x-amzn-errortype": f"{error.code}:{_ERROR_TYPE_SUFFIX}",
    }
    handler.send_json(error.http_status, headers, _json_bytes({"message": error.text}))


def _stream_messages(route: _Route, body: Any, answer: _Answer) -> list[bytes]:
    """The encoded event-stream messages of a streaming reply."""
    if route.operation == "converse_stream":
        return [
            event_message(name, payload)
            for event in _converse_events(answer)
            for name, payload in event.items()
        ]
    model_id = route.model_id or ""
    chunks = _invoke_chunks(_dialect(model_id, _mapping(body)), answer, model_id)
    return [chunk_event(chunk) for chunk in chunks]


def _reply_response(
    route: _Route, request: _Request, answer: _Answer
) -> tuple[dict[str, str], bytes]:
    """Headers and JSON body of a non-streaming reply."""
    headers = {"Content-Type": _JSON}
    if answer.body is not None:
        document: Any = dict(answer.body)
    elif route.operation == "converse":
        document = _converse_body(answer)
    elif route.operation == "apply_guardrail":
        document = _guardrail_body(answer, request.view)
    elif route.operation == "count_tokens":
        document = {"inputTokens": answer.input_tokens}
    else:
        model_id = route.model_id or ""
        document = _invoke_body(_dialect(model_id, _mapping(request.body)), answer, model_id)
    if route.operation == "invoke_model":
        # Bedrock reports invoke_model usage in headers, whatever the model's body says.
        headers["X-Amzn-Bedrock-Invocation-Latency"] = str(answer.latency_ms)
        headers["X-Amzn-Bedrock-Input-Token-Count"] = str(answer.input_tokens)
        headers["X-Amzn-Bedrock-Output-Token-Count"] = str(answer.output_tokens)
        if answer.cache_read_tokens is not None:
            headers["X-Amzn-Bedrock-Cache-Read-Input-Token-Count"] = str(answer.cache_read_tokens)
        if answer.cache_write_tokens is not None:
            headers["X-Amzn-Bedrock-Cache-Write-Input-Token-Count"] = str(answer.cache_write_tokens)
    return headers, _json_bytes(document)


# --- command line --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bedrock-trace standin",
        description="Serve a local stand-in for Amazon Bedrock Runtime (nothing contacts AWS).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to listen on (default 8765; 0: any free port)"
    )
    parser.add_argument("--scenario", type=Path, help="JSON scenario file (rules)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until interrupted (Ctrl-C or SIGTERM); the exit status."""
    args = _parser().parse_args(argv)
    try:
        scenario = Scenario.load(args.scenario) if args.scenario else Scenario()
    except (OSError, ValueError) as exc:
        print(f"bedrock-trace standin: cannot load {args.scenario}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    _log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    server = StandIn(scenario, host=args.host, port=args.port)
    try:
        server.start()
    except OSError as exc:
        print(
            f"bedrock-trace standin: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    print(f"Bedrock Runtime stand-in listening on {server.endpoint_url}", flush=True)
    print(f"  export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={server.endpoint_url}", flush=True)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
