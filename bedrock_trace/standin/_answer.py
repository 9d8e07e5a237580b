"""The default answer (echo, tool call, answer from tool results) and the decided reply."""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from bedrock_trace.standin._request import _Tool, _View
from bedrock_trace.standin._scenario import Reply, Slow, ToolUse
from bedrock_trace.standin._wire import _list, _mapping

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
