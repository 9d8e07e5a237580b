"""Converse and ConverseStream answers."""

from __future__ import annotations

import json

from bedrock_trace.standin._answer import _Answer
from bedrock_trace.standin._wire import _JsonObject


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
