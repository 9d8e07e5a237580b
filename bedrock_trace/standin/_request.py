"""Reading requests: what the default answer and the rules need from each request format."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from bedrock_trace.standin._routes import AGENT_OPERATIONS as _AGENT_OPERATIONS
from bedrock_trace.standin._wire import _list, _mapping, _str, _text_chars


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
    if operation in _AGENT_OPERATIONS:
        return _View(user_text=_agent_user_text(operation, body), text_chars=_text_chars(body))
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


def _document_text(document: Any) -> str:
    """The strings of a flow input document, joined."""
    if isinstance(document, str):
        return document
    if isinstance(document, Mapping):
        return " ".join(t for t in (_document_text(v) for v in document.values()) if t)
    if isinstance(document, list):
        return " ".join(t for t in (_document_text(v) for v in document) if t)
    return ""


def _first(value: Any) -> Mapping[str, Any]:
    items = _list(value)
    return _mapping(items[0]) if items else {}


def _agent_user_text(operation: str, body: Mapping[str, Any]) -> str:
    """The question of an agent runtime request: what a rule's ``contains`` is tested against."""
    if operation in ("invoke_agent", "invoke_inline_agent"):
        return _str(body.get("inputText"))
    if operation == "retrieve":
        return _str(_mapping(body.get("retrievalQuery")).get("text"))
    if operation in ("retrieve_and_generate", "retrieve_and_generate_stream"):
        return _str(_mapping(body.get("input")).get("text"))
    if operation == "rerank":
        return _str(_mapping(_first(body.get("queries")).get("textQuery")).get("text"))
    if operation == "invoke_flow":
        return _document_text(_mapping(_first(body.get("inputs")).get("content")).get("document"))
    return ""


def _knowledge_base_configuration(body: Mapping[str, Any]) -> Mapping[str, Any]:
    configuration = _mapping(body.get("retrieveAndGenerateConfiguration"))
    return _mapping(configuration.get("knowledgeBaseConfiguration"))


def _body_targets(operation: str, body: Any) -> tuple[str | None, str | None]:
    """The model and the resource (agent name, knowledge base) a request names in its body."""
    body = _mapping(body)
    if operation == "invoke_inline_agent":
        return _str(body.get("foundationModel")) or None, _str(body.get("agentName")) or None
    if operation in ("retrieve_and_generate", "retrieve_and_generate_stream"):
        configuration = _knowledge_base_configuration(body)
        model = _str(configuration.get("modelArn"))
        return model or None, _str(configuration.get("knowledgeBaseId")) or None
    if operation == "rerank":
        reranking = _mapping(
            _mapping(body.get("rerankingConfiguration")).get("bedrockRerankingConfiguration")
        )
        model = _str(_mapping(reranking.get("modelConfiguration")).get("modelArn"))
        return model or None, None
    return None, None
