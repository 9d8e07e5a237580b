"""invoke_model bodies as a chat, for the MLflow UI's Chat view.

The MLflow UI renders ``mlflow.chat.messages`` (OpenAI-style ``{"role", "content",
"tool_calls", "tool_call_id"}`` messages) as a chat whatever the span's inputs look like. An
invoke_model span keeps the model's own body as inputs and outputs (so nothing is lost), and
gets this attribute from one converter per model family, looked up by family name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

Message = dict[str, Any]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _message(role: str, content: str | list[dict[str, Any]] | None, **extra: Any) -> Message:
    message: Message = {"role": role, "content": content}
    message.update({key: value for key, value in extra.items() if value})
    return message


def _tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "id": str(call_id or ""),
        "type": "function",
        "function": {"name": str(name or ""), "arguments": text},
    }


def _media_note(kind: str) -> str:
    """A short marker for non-text content (its bytes are a placeholder in inputs anyway)."""
    return f"[{kind}]"


# --- Anthropic messages (model-parameters-anthropic-claude-messages.html) --------------------


def _anthropic_message(role: str, content: Any) -> list[Message]:
    if isinstance(content, str):
        return [_message(role, content)]
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[Message] = []
    for block in _list(content):
        block = _dict(block)
        kind = block.get("type")
        if kind == "text":
            texts.append(_text(block.get("text")))
        elif kind == "tool_use":
            calls.append(_tool_call(block.get("id"), block.get("name"), block.get("input", {})))
        elif kind == "tool_result":
            inner = block.get("content")
            text = inner if isinstance(inner, str) else _joined_anthropic_text(inner)
            results.append(_message("tool", text, tool_call_id=block.get("tool_use_id")))
        elif kind in ("image", "document"):
            texts.append(_media_note(kind))
    messages = results
    if texts or calls:
        messages.append(_message(role, "\n".join(texts) or None, tool_calls=calls))
    return messages


def _joined_anthropic_text(blocks: Any) -> str:
    return "\n".join(_text(_dict(block).get("text")) for block in _list(blocks))


def _anthropic(request: Any, response: Any) -> list[Message]:
    request, response = _dict(request), _dict(response)
    if "messages" not in request and isinstance(request.get("prompt"), str):
        # Legacy text completions (model-parameters-anthropic-claude-text-completion.html).
        return _completion("prompt", lambda body: body.get("completion"))(request, response)
    messages: list[Message] = []
    system = request.get("system")
    if system:
        text = system if isinstance(system, str) else _joined_anthropic_text(system)
        messages.append(_message("system", text))
    for message in _list(request.get("messages")):
        message = _dict(message)
        messages += _anthropic_message(_text(message.get("role")) or "user", message.get("content"))
    if response:
        messages += _anthropic_message("assistant", response.get("content"))
    return messages


# --- Converse-shaped bodies: Amazon Nova (model-parameters-nova.html) ------------------------


def _converse_message(role: str, content: Any) -> list[Message]:
    texts: list[str] = []
    images: list[str] = []  # mlflow-attachment:// references, shown inline by the MLflow UI
    calls: list[dict[str, Any]] = []
    results: list[Message] = []
    for block in _list(content):
        block = _dict(block)
        if "text" in block:
            texts.append(_text(block["text"]))
        elif "toolUse" in block:
            use = _dict(block["toolUse"])
            calls.append(_tool_call(use.get("toolUseId"), use.get("name"), use.get("input", {})))
        elif "toolResult" in block:
            result = _dict(block["toolResult"])
            lines = [
                _text(part.get("text")) if "text" in part else json.dumps(part.get("json"))
                for part in map(_dict, _list(result.get("content")))
            ]
            results.append(_message("tool", "\n".join(lines), tool_call_id=result.get("toolUseId")))
        elif ref := _attachment_ref(block.get("image")):
            images.append(ref)
        else:
            texts.extend(_media_note(kind) for kind in block if kind != "cachePoint")
    messages = results
    if images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": "\n".join(texts)}] if texts else []
        parts += [{"type": "image_url", "image_url": {"url": ref}} for ref in images]
        messages.append(_message(role, parts, tool_calls=calls))
    elif texts or calls:
        messages.append(_message(role, "\n".join(texts) or None, tool_calls=calls))
    return messages


def _attachment_ref(image: Any) -> str | None:
    data = _dict(_dict(image).get("source")).get("bytes")
    return data if isinstance(data, str) and data.startswith(ATTACHMENT_SCHEME) else None


ATTACHMENT_SCHEME = "mlflow-attachment://"


def _nova(request: Any, response: Any) -> list[Message]:
    request = _dict(request)
    messages: list[Message] = []
    system = "\n".join(_text(_dict(part).get("text")) for part in _list(request.get("system")))
    if system:
        messages.append(_message("system", system))
    for message in _list(request.get("messages")):
        message = _dict(message)
        messages += _converse_message(_text(message.get("role")) or "user", message.get("content"))
    output = _dict(_dict(_dict(response).get("output")).get("message"))
    if output:
        messages += _converse_message("assistant", output.get("content"))
    return messages


# --- OpenAI chat completions: gpt-oss, Jamba, Mistral chat, DeepSeek -------------------------


def _openai_message(message: Any) -> Message | None:
    message = _dict(message)
    role = message.get("role")
    if role not in ("system", "user", "assistant", "tool"):
        return None
    content = message.get("content")
    if isinstance(content, list):
        content = "\n".join(
            _text(part.get("text")) if part.get("type") == "text" else _media_note("image")
            for part in map(_dict, content)
        )
    calls = [
        _tool_call(
            call.get("id"),
            _dict(call.get("function")).get("name"),
            _dict(call.get("function")).get("arguments", ""),
        )
        for call in map(_dict, _list(message.get("tool_calls")))
    ]
    return _message(
        str(role),
        content if isinstance(content, str) else None,
        tool_calls=calls,
        tool_call_id=message.get("tool_call_id"),
    )


def _openai(request: Any, response: Any) -> list[Message]:
    request = _dict(request)
    messages = [_openai_message(message) for message in _list(request.get("messages"))]
    if "prompt" in request and not messages:
        messages = [_message("user", _text(request["prompt"]))]
    for choice in map(_dict, _list(_dict(response).get("choices"))):
        if "message" in choice:
            messages.append(_openai_message(choice["message"]))
        elif "text" in choice:
            messages.append(_message("assistant", _text(choice["text"])))
    for output in map(_dict, _list(_dict(response).get("outputs"))):
        messages.append(_message("assistant", _text(output.get("text"))))
    return [message for message in messages if message is not None]


# --- prompt / completion families -------------------------------------------------------------


def _completion(
    prompt_key: str, read_output: Callable[[Mapping[str, Any]], Any]
) -> Callable[[Any, Any], list[Message]]:
    def convert(request: Any, response: Any) -> list[Message]:
        prompt = _dict(request).get(prompt_key)
        if not isinstance(prompt, str):
            return []
        messages = [_message("user", prompt)]
        output = read_output(_dict(response))
        if isinstance(output, str):
            messages.append(_message("assistant", output))
        return messages

    return convert


def _first(key: str, field: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda body: _dict(next(iter(_list(body.get(key))), {})).get(field)


def _cohere(request: Any, response: Any) -> list[Message]:
    """Cohere Command R (model-parameters-cohere-command-r-plus.html)."""
    request = _dict(request)
    messages: list[Message] = []
    if preamble := _text(request.get("preamble")):
        messages.append(_message("system", preamble))
    for turn in map(_dict, _list(request.get("chat_history"))):
        role = "assistant" if turn.get("role") == "CHATBOT" else "user"
        messages.append(_message(role, _text(turn.get("message"))))
    if isinstance(request.get("message"), str):
        messages.append(_message("user", request["message"]))
    if isinstance(text := _dict(response).get("text"), str):
        messages.append(_message("assistant", text))
    return messages


CONVERTERS: dict[str, Callable[[Any, Any], list[Message]]] = {
    "anthropic": _anthropic,
    "amazon-nova": _nova,
    "openai": _openai,
    "ai21-jamba": _openai,
    "mistral": _openai,
    "deepseek": _openai,
    "meta-llama": _completion("prompt", lambda body: body.get("generation")),
    "amazon-titan-text": _completion("inputText", _first("results", "outputText")),
    "cohere-command": _cohere,
    "cohere-command-text": _completion("prompt", _first("generations", "text")),
}


def converse_with_images(inputs: Any, outputs: Any) -> list[Message] | None:
    """A converse call as a chat whose images the MLflow UI shows inline, or None.

    The UI reads converse spans' own inputs as a chat, but shows an image there as the text of
    its reference; it shows ``image_url`` parts of ``mlflow.chat.messages`` as images. So a
    converse span whose recorded inputs hold image attachments gets that attribute too, made
    from what was recorded (content controls already applied).
    """
    messages = _nova(inputs, outputs)
    with_images = any(isinstance(message.get("content"), list) for message in messages)
    return messages if with_images else None


def chat_messages(family: str, request: Any, response: Any) -> list[Message] | None:
    """The conversation of an invoke_model call, or None for non-chat families."""
    converter = CONVERTERS.get(family)
    if converter is None:
        return None
    messages = converter(request, response)
    return messages or None
