"""Accumulators: rebuild the non-streaming response from stream events.

Each accumulator takes the events of one stream, in order, and builds what the non-streaming
operation would have returned for the same content, so the non-streaming mapper finishes the
span for both (usage, stop reason, latency). ``add`` returns the name and JSON text of the
span event to record, and whether the event carried model output (for time to first token).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from bedrock_trace import _models
from bedrock_trace._payload import MIN_BASE64_CHARS as _MIN_BASE64_CHARS
from bedrock_trace._payload import json_safe

# span event name, JSON text (None when not asked for), carries model output
Recorded = tuple[str, "str | None", bool]


# json.dumps(value, separators=(",", ":")), without building an encoder for every event.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _dumps(value: Any, include_binary: bool) -> str:
    # Almost every payload is plain JSON: let the C encoder try first, and walk the value for
    # binary content and other types only when it refuses.
    try:
        return _COMPACT.encode(value)
    except (TypeError, ValueError):
        return _COMPACT.encode(json_safe(value, include_binary))


# Stream payloads come from the network: every field is checked before use, never assumed.
def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _index(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _parse_json(text: str) -> Any:
    """Tool input assembled from deltas; kept as the raw text if it does not parse."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


@attrs.define
class _Block:
    """One content block of a converse-shaped message, by content-block index."""

    kind: str | None = None
    start: dict[str, Any] = attrs.Factory(dict)
    text: list[str] = attrs.Factory(list)
    tool_input: list[str] = attrs.Factory(list)
    reasoning: list[str] = attrs.Factory(list)
    signature: str | None = None
    redacted: list[bytes] = attrs.Factory(list)
    citations: list[Any] = attrs.Factory(list)
    tool_result: list[Any] = attrs.Factory(list)
    image_source: Any = None

    def build(self) -> dict[str, Any]:
        if self.kind == "toolUse":
            tool_use = dict(self.start)
            tool_use["input"] = _parse_json("".join(self.tool_input))
            return {"toolUse": tool_use}
        if self.kind == "toolResult":
            return {"toolResult": {**self.start, "content": list(self.tool_result)}}
        if self.kind == "image":
            return {"image": {**self.start, "source": self.image_source}}
        if self.kind == "reasoningContent":
            if self.redacted and not self.reasoning:
                return {"reasoningContent": {"redactedContent": b"".join(self.redacted)}}
            reasoning_text: dict[str, Any] = {"text": "".join(self.reasoning)}
            if self.signature is not None:
                reasoning_text["signature"] = self.signature
            return {"reasoningContent": {"reasoningText": reasoning_text}}
        if self.citations:
            return {
                "citationsContent": {
                    "content": [{"text": "".join(self.text)}],
                    "citations": list(self.citations),
                }
            }
        return {"text": "".join(self.text)}


class ConverseAccumulator:
    """ConverseStream events (and Nova's messages-v1 chunks, which share their names).

    Sample events (ConverseStreamOutput in the Bedrock Runtime API reference)::

        {"messageStart": {"role": "assistant"}}
        {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "t1", "name": "f"}},
                               "contentBlockIndex": 1}}
        {"contentBlockDelta": {"delta": {"text": "Hel"}, "contentBlockIndex": 0}}
        {"contentBlockDelta": {"delta": {"toolUse": {"input": "{\\"city\\": "}},
                               "contentBlockIndex": 1}}
        {"contentBlockStop": {"contentBlockIndex": 1}}
        {"messageStop": {"stopReason": "tool_use"}}
        {"metadata": {"usage": {"inputTokens": 9, ...}, "metrics": {"latencyMs": 300}}}
    """

    _TOP_LEVEL = ("usage", "metrics", "trace", "performanceConfig", "serviceTier")

    def __init__(self, include_binary: bool = False) -> None:
        self.include_binary = include_binary
        #: the final event (``metadata``) arrived: the stream is complete however it is closed
        self.finished = False
        self.role = "assistant"
        self.blocks: dict[int, _Block] = {}
        self.response: dict[str, Any] = {}
        self.unknown: list[dict[str, Any]] = []

    def add(self, event: Mapping[str, Any], text: bool = True) -> Recorded:
        """Take one stream event (a dict with one key, the event type); JSON text if asked."""
        name, payload = next(iter(event.items())) if event else ("unknown", {})
        content = self.apply(name, payload)
        return name, _dumps(payload, self.include_binary) if text else None, content

    def apply(self, name: str, payload: Any) -> bool:
        if type(payload) is not dict and not isinstance(payload, Mapping):
            self.unknown.append({name: payload})
            return False
        if name == "contentBlockDelta":  # nearly every event
            delta = payload.get("delta")
            if type(delta) is dict and len(delta) == 1 and type(delta.get("text")) is str:
                self._block(payload).text.append(delta["text"])
            elif isinstance(delta, Mapping):
                self._delta(self._block(payload), delta)
            return True
        if name == "messageStart":
            self.role = _text(payload.get("role")) or self.role
            return False
        if name == "contentBlockStart":
            block = self._block(payload)
            start = payload.get("start")
            if isinstance(start, Mapping) and start:
                kind, value = next(iter(start.items()))
                block.kind, block.start = str(kind), dict(_dict(value))
            return True
        if name == "contentBlockStop":
            return False
        if name == "messageStop":
            self.response.update(payload)
            return False
        if name == "metadata":
            self.finished = True
            for key in self._TOP_LEVEL:
                if key in payload:
                    self.response[key] = payload[key]
            return False
        # A future event type: kept in the rebuilt output so nothing is lost.
        self.unknown.append({name: payload})
        return False

    def _block(self, payload: Mapping[str, Any]) -> _Block:
        index = _index(payload.get("contentBlockIndex"))
        block = self.blocks.get(index)
        if block is None:
            block = self.blocks[index] = _Block()
        return block

    @staticmethod
    def _delta(block: _Block, delta: Mapping[str, Any]) -> None:
        if "text" in delta:
            block.text.append(_text(delta["text"]))
        if "toolUse" in delta:
            block.kind = "toolUse"
            block.tool_input.append(_text(_dict(delta["toolUse"]).get("input")))
        if "reasoningContent" in delta:
            block.kind = "reasoningContent"
            reasoning = _dict(delta["reasoningContent"])
            if "text" in reasoning:
                block.reasoning.append(_text(reasoning["text"]))
            if "signature" in reasoning:
                block.signature = _text(reasoning["signature"])
            redacted = reasoning.get("redactedContent")
            if isinstance(redacted, (bytes, bytearray)):
                block.redacted.append(bytes(redacted))
        if "citation" in delta:
            block.citations.append(delta["citation"])
        if "toolResult" in delta:
            block.kind = "toolResult"
            block.tool_result.extend(_list(delta["toolResult"]))
        if "image" in delta:
            block.kind = "image"
            block.image_source = _dict(delta["image"]).get("source")

    def build(self) -> dict[str, Any]:
        """The Converse response these events amount to."""
        content = [self.blocks[index].build() for index in sorted(self.blocks)]
        response: dict[str, Any] = {"output": {"message": {"role": self.role, "content": content}}}
        response.update(self.response)
        if self.unknown:
            response["unknownEvents"] = list(self.unknown)
        return response


# --- invoke_model_with_response_stream -----------------------------------------------------

INVOCATION_METRICS = "amazon-bedrock-invocationMetrics"


class ChunkAccumulator:
    """InvokeModelWithResponseStream ``chunk`` events, rebuilt per model family.

    Every chunk is ``{"chunk": {"bytes": b"<JSON of the model's own streaming format>"}}``;
    the family decides how the decoded chunks add up to the non-streaming body.
    """

    def __init__(self, model_id: Any, include_binary: bool = False) -> None:
        self.include_binary = include_binary
        self.family = _models.family_of(model_id)
        self.builder = _BUILDERS.get(self.family.name, _GenericBuilder)()
        self.metrics: dict[str, Any] | None = None
        self.unknown: list[Any] = []
        #: the final chunk arrived: Bedrock adds its invocation metrics to the last chunk of
        #: every model family (and Anthropic's ``message_stop`` says so in the model's terms)
        self.finished = False

    def add(self, event: Mapping[str, Any], text: bool = True) -> Recorded:
        """Take one stream event; its JSON text is the chunk's own bytes, decoded."""
        chunk = event.get("chunk") if type(event) is dict or isinstance(event, Mapping) else None
        raw = chunk.get("bytes") if type(chunk) is dict or isinstance(chunk, Mapping) else None
        if type(raw) is not bytes and not isinstance(raw, (bytes, bytearray)):
            # Not a chunk: a future event type. Recorded as it came, kept in the output.
            name = next(iter(event), "unknown") if isinstance(event, Mapping) else "unknown"
            self.unknown.append(event)
            return str(name), _dumps(event, self.include_binary) if text else None, False
        decoded_text = (raw if type(raw) is bytes else bytes(raw)).decode("utf-8", errors="replace")
        try:
            decoded = json.loads(decoded_text)
        except (ValueError, RecursionError):
            self.unknown.append(decoded_text)
            return "chunk", json.dumps(decoded_text), False
        if not isinstance(decoded, dict):
            self.unknown.append(decoded)
            return "chunk", decoded_text, False
        metrics = decoded.pop(INVOCATION_METRICS, None)
        if isinstance(metrics, Mapping):
            self.metrics = dict(metrics)
            self.finished = True
        content = self.builder.add(decoded)
        kind = decoded.get("type")
        if kind == "message_stop":
            self.finished = True
        name = kind if isinstance(kind, str) else "chunk"
        if not text:
            return name, None, content
        return name, self._event_text(decoded_text, decoded, metrics), content

    def _event_text(self, decoded_text: str, decoded: dict[str, Any], metrics: Any) -> str:
        """The chunk's own JSON, with base64 binary content as placeholders (as in outputs)."""
        if self.include_binary or len(decoded_text) < _MIN_BASE64_CHARS:
            return decoded_text  # too short to hold binary content worth a placeholder
        safe = json_safe(decoded, False, base64_strings=True)
        if safe is decoded:
            return decoded_text
        if metrics is not None:
            safe = {**safe, INVOCATION_METRICS: metrics}
        return _COMPACT.encode(safe)

    def build(self) -> Any:
        body = self.builder.build()
        if self.unknown and isinstance(body, dict):
            body["unknownChunks"] = list(self.unknown)
        return body


class _GenericBuilder:
    """Unknown families: the decoded chunks, in order."""

    def __init__(self) -> None:
        self.chunks: list[Any] = []

    def add(self, chunk: dict[str, Any]) -> bool:
        self.chunks.append(chunk)
        return True

    def build(self) -> Any:
        return {"chunks": self.chunks}


class _AnthropicBuilder:
    """Anthropic Messages API streaming events (model-parameters-anthropic-claude-messages).

    Sample::

        {"type": "message_start", "message": {"id": "msg_1", "role": "assistant",
         "content": [], "usage": {"input_tokens": 12, "output_tokens": 1}}}
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
        {"type": "content_block_stop", "index": 0}
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
         "usage": {"output_tokens": 5}}
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {...}}
    """

    _TEXT_DELTAS: ClassVar[dict[str, str]] = {
        "text_delta": "text",
        "thinking_delta": "thinking",
        "signature_delta": "signature",
    }

    def __init__(self) -> None:
        self.message: dict[str, Any] = {"type": "message", "role": "assistant", "content": []}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.partial_json: dict[int, list[str]] = {}
        # (block index, field) -> fragments; joined once in build(), not on every delta
        self.parts: dict[tuple[int, str], list[str]] = {}
        self.usage: dict[str, Any] = {}

    def add(self, chunk: dict[str, Any]) -> bool:
        kind = chunk.get("type")
        if kind == "content_block_delta":
            # Nearly every chunk: a text delta of a block already started.
            index, delta = chunk.get("index"), chunk.get("delta")
            if type(delta) is dict and delta.get("type") == "text_delta" and type(index) is int:
                text = delta.get("text")
                parts = self.parts.get((index, "text"))
                if type(text) is str and parts is not None and index in self.blocks:
                    parts.append(text)
                    return True
        if kind == "message_start":
            message = _dict(chunk.get("message"))
            self.message.update({k: v for k, v in message.items() if k != "content"})
            self.usage.update(_dict(message.get("usage")))
            return False
        if kind == "content_block_start":
            self.blocks[_index(chunk.get("index"))] = dict(_dict(chunk.get("content_block")))
            return True
        if kind == "content_block_delta":
            index = _index(chunk.get("index"))
            block = self.blocks.setdefault(index, {"type": "text", "text": ""})
            delta = _dict(chunk.get("delta"))
            delta_type = delta.get("type")
            if delta_type == "input_json_delta":
                self.partial_json.setdefault(index, []).append(_text(delta.get("partial_json")))
            elif delta_type == "citations_delta":
                citations = block.get("citations")
                if not isinstance(citations, list):
                    citations = block["citations"] = []
                citations.append(delta.get("citation"))
            elif delta_type in self._TEXT_DELTAS:
                field = self._TEXT_DELTAS[delta_type]
                self.parts.setdefault((index, field), []).append(_text(delta.get(field)))
            return True
        if kind == "message_delta":
            self.message.update(_dict(chunk.get("delta")))
            self.usage.update(_dict(chunk.get("usage")))
            return False
        return False

    def build(self) -> dict[str, Any]:
        message = dict(self.message)
        content = []
        for (index, field), parts in self.parts.items():
            block = self.blocks[index]
            block[field] = _text(block.get(field)) + "".join(parts)
        self.parts.clear()
        for index in sorted(self.blocks):
            block = dict(self.blocks[index])
            if index in self.partial_json:
                block["input"] = _parse_json("".join(self.partial_json[index]))
            content.append(block)
        message["content"] = content
        if self.usage:
            message["usage"] = dict(self.usage)
        return message


class _NovaBuilder:
    """Amazon Nova messages-v1 chunks: the ConverseStream event names (model-parameters-nova)."""

    def __init__(self) -> None:
        self.converse = ConverseAccumulator()

    def add(self, chunk: dict[str, Any]) -> bool:
        content = False
        for name, payload in chunk.items():
            content = self.converse.apply(name, payload) or content
        return content

    def build(self) -> dict[str, Any]:
        return self.converse.build()


class _TextFieldBuilder:
    """Families whose chunks carry a text fragment and final counters at the top level."""

    TEXT = ""
    KEEP: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.fields: dict[str, Any] = {}

    def add(self, chunk: dict[str, Any]) -> bool:
        text = chunk.get(self.TEXT)
        if isinstance(text, str):
            self.parts.append(text)
        for key in self.KEEP:
            if chunk.get(key) is not None:
                self.fields[key] = chunk[key]
        return bool(text)

    def build(self) -> dict[str, Any]:
        return {self.TEXT: "".join(self.parts), **self.fields}


class _LlamaBuilder(_TextFieldBuilder):
    """Meta Llama: ``generation`` fragments, counts, ``stop_reason`` (model-parameters-meta)."""

    TEXT = "generation"
    KEEP = ("prompt_token_count", "generation_token_count", "stop_reason")


class _TitanTextBuilder(_TextFieldBuilder):
    """Titan Text: ``outputText`` fragments (model-parameters-titan-text)."""

    TEXT = "outputText"
    KEEP = ("inputTextTokenCount", "totalOutputTextTokenCount", "completionReason")

    def build(self) -> dict[str, Any]:
        result: dict[str, Any] = {"outputText": "".join(self.parts)}
        if "totalOutputTextTokenCount" in self.fields:
            result["tokenCount"] = self.fields["totalOutputTextTokenCount"]
        if "completionReason" in self.fields:
            result["completionReason"] = self.fields["completionReason"]
        body: dict[str, Any] = {"results": [result]}
        if "inputTextTokenCount" in self.fields:
            body["inputTextTokenCount"] = self.fields["inputTextTokenCount"]
        return body


class _ChoicesBuilder:
    """OpenAI-style chunks with ``choices``: Mistral chat, AI21 Jamba, gpt-oss, DeepSeek.

    Handles ``choices[i].delta.content`` (chat completions), ``choices[i].text`` (DeepSeek
    text) and ``outputs[i].text`` (Mistral text completions).
    """

    def __init__(self) -> None:
        self.choices: dict[int, dict[str, Any]] = {}
        self.outputs: dict[int, dict[str, Any]] = {}
        self.extra: dict[str, Any] = {}
        # message dict id -> (message, tool call index -> call being assembled)
        self.tool_calls: dict[int, tuple[dict[str, Any], dict[int, dict[str, Any]]]] = {}
        # (target dict id, field) -> (target, fragments): joined once in build()
        self.parts: dict[tuple[int, str], tuple[dict[str, Any], list[str]]] = {}

    def _append(self, target: dict[str, Any], field: str, text: str) -> None:
        entry = self.parts.get((id(target), field))
        if entry is None:
            entry = self.parts[(id(target), field)] = (target, [])
        entry[1].append(text)

    def add(self, chunk: dict[str, Any]) -> bool:
        content = False
        for position, choice in enumerate(_list(chunk.get("choices"))):
            if not isinstance(choice, Mapping):
                continue
            index = choice.get("index")
            target = self.choices.setdefault(_index(index) if index is not None else position, {})
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                message = target.setdefault("message", {"role": "assistant", "content": ""})
                for key in ("content", "reasoning_content"):
                    if isinstance(delta.get(key), str):
                        self._append(message, key, delta[key])
                        content = True
                if isinstance(delta.get("role"), str):
                    message["role"] = delta["role"]
                if delta.get("tool_calls"):
                    self._tool_calls(message, _list(delta["tool_calls"]))
            if isinstance(choice.get("text"), str):
                self._append(target, "text", choice["text"])
                content = True
            for key in ("finish_reason", "stop_reason"):
                if choice.get(key) is not None:
                    target[key] = choice[key]
        for position, output in enumerate(_list(chunk.get("outputs"))):
            if isinstance(output, Mapping):
                target = self.outputs.setdefault(position, {"text": ""})
                self._append(target, "text", _text(output.get("text")))
                if output.get("stop_reason") is not None:
                    target["stop_reason"] = output["stop_reason"]
                content = True
        for key in ("usage", "id", "model"):
            if chunk.get(key) is not None:
                self.extra[key] = chunk[key]
        return content

    def _tool_calls(self, message: dict[str, Any], fragments: list[Any]) -> None:
        """Merge streamed tool-call fragments into one call per ``index``.

        Sample (gpt-oss, chat completions streaming): the first fragment of a call carries its
        id, type and name, the following ones only more of its arguments::

            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}
            {"index": 0, "function": {"arguments": "{\"city\": "}}
        """
        calls = self.tool_calls.setdefault(id(message), (message, {}))[1]
        for position, fragment in enumerate(fragments):
            if not isinstance(fragment, Mapping):
                continue
            index = fragment.get("index")
            key = _index(index) if index is not None else len(calls) + position
            call = calls.get(key)
            if call is None:
                call = calls[key] = {"function": {}}
                message.setdefault("tool_calls", []).append(call)
            for field in ("id", "type"):
                if fragment.get(field) is not None:
                    call[field] = fragment[field]
            function = _dict(fragment.get("function"))
            if function.get("name") is not None:
                call["function"]["name"] = function["name"]
            if isinstance(function.get("arguments"), str):
                self._append(call["function"], "arguments", function["arguments"])

    def build(self) -> dict[str, Any]:
        for (_, field), (target, fragments) in self.parts.items():
            target[field] = _text(target.get(field)) + "".join(fragments)
        self.parts.clear()
        body: dict[str, Any] = dict(self.extra)
        if self.choices:
            body["choices"] = [{"index": i, **self.choices[i]} for i in sorted(self.choices)]
        if self.outputs:
            body["outputs"] = [self.outputs[i] for i in sorted(self.outputs)]
        return body


class _CohereBuilder:
    """Cohere Command R: text-generation events, then stream-end with the full response."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.final: dict[str, Any] | None = None
        self.finish_reason: Any = None

    def add(self, chunk: dict[str, Any]) -> bool:
        if chunk.get("event_type") == "stream-end":
            response = chunk.get("response")
            self.final = dict(response) if isinstance(response, Mapping) else None
            self.finish_reason = chunk.get("finish_reason")
            return False
        text = chunk.get("text")
        generating = chunk.get("event_type", "text-generation") == "text-generation"
        if isinstance(text, str) and generating:
            self.parts.append(text)
            return True
        return False

    def build(self) -> dict[str, Any]:
        body = self.final or {"text": "".join(self.parts)}
        if self.finish_reason is not None:
            body.setdefault("finish_reason", self.finish_reason)
        return body


_BUILDERS: dict[str, type[Any]] = {
    "anthropic": _AnthropicBuilder,
    "amazon-nova": _NovaBuilder,
    "amazon-titan-text": _TitanTextBuilder,
    "meta-llama": _LlamaBuilder,
    "mistral": _ChoicesBuilder,
    "ai21-jamba": _ChoicesBuilder,
    "deepseek": _ChoicesBuilder,
    "openai": _ChoicesBuilder,
    "cohere-command": _CohereBuilder,
}
