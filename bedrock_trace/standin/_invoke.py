"""InvokeModel and InvokeModelWithResponseStream bodies, per model family."""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any, Final

from bedrock_trace.standin._answer import _Answer, _estimate_tokens
from bedrock_trace.standin._converse import _converse_content, _converse_events
from bedrock_trace.standin._wire import _JsonObject

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
        ("amazon.titan-embed", "titan-embed"),
        ("cohere.embed", "cohere-embed"),
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


# Embedding models (model-parameters-titan-embed-text, model-parameters-embed): a vector per
# text, the same for the same text (derived from its SHA-256), so tests can compare replies.
_EMBEDDING_DIMENSIONS: Final = 1024


def _vector(text: str, dimensions: int, normalize: bool) -> list[float]:
    seed = hashlib.sha256(text.encode("utf-8")).digest()
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(seed + block.to_bytes(4, "big")).digest()
        values.extend((byte - 127.5) / 127.5 for byte in digest)
        block += 1
    del values[dimensions:]
    norm = math.sqrt(sum(v * v for v in values)) if normalize else 1.0
    return [round(v / (norm or 1.0), 6) for v in values]


def _dimensions(body: Mapping[str, Any]) -> int:
    value = body.get("dimensions")
    return value if isinstance(value, int) and 1 <= value <= 8192 else _EMBEDDING_DIMENSIONS


def _titan_embedding_body(body: Mapping[str, Any]) -> _JsonObject:
    """Sample: {"embedding": [0.01, ...], "inputTextTokenCount": 3}."""
    text = body.get("inputText")
    text = text if isinstance(text, str) else ""
    normalize = body.get("normalize", True) is not False
    return {
        "embedding": _vector(text, _dimensions(body), normalize),
        "inputTextTokenCount": _estimate_tokens(len(text)),
    }


def _cohere_embedding_body(body: Mapping[str, Any]) -> _JsonObject:
    """Sample: {"id": "...", "embeddings": [[...], ...], "texts": [...],
    "response_type": "embeddings_floats"}."""
    texts = [text for text in body.get("texts") or () if isinstance(text, str)]
    return {
        "id": secrets.token_hex(16),
        "embeddings": [_vector(text, _EMBEDDING_DIMENSIONS, True) for text in texts],
        "texts": texts,
        "response_type": "embeddings_floats",
    }


def _invoke_body(
    dialect: str, answer: _Answer, model_id: str, body: Mapping[str, Any] | None = None
) -> _JsonObject:
    if dialect == "titan-embed":
        return _titan_embedding_body(body or {})
    if dialect == "cohere-embed":
        return _cohere_embedding_body(body or {})
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
