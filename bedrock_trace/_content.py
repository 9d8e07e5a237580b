"""Content controls: what of the prompts and completions reaches a span.

Every payload (span inputs, span outputs, stream event payloads, chat messages) passes through
:func:`record` right before it is handed to MLflow:

1. ``capture_content=False`` keeps metadata only: numbers, booleans and a short list of
   descriptive fields (model id, roles, stop reasons, types); every other string is dropped.
2. the ``redact`` hook, if configured, rewrites what is left. If it raises, the payload is
   replaced by a marker: a failing redactor never lets unredacted content through.
3. with ``include_binary``, binary content becomes MLflow attachments (``_attachments``).
4. ``max_payload_chars`` caps the payload's JSON size; a bigger payload is replaced by a
   preview of that many characters and an explicit truncation marker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bedrock_trace import _attachments
from bedrock_trace import _keys as K
from bedrock_trace._config import TraceConfig
from bedrock_trace._fast_path import Payload, json_text
from bedrock_trace._guard import Guard
from bedrock_trace._keys import CHAT_MESSAGES, CHAT_TOOLS

# A failing redaction hook is the user's error, not ours: contained and reported, and never
# re-raised into the traced call, strict mode or not.
_guard_redact = Guard("redact hook", reraise_in_strict=False)

# Strings that describe a call rather than carry its content.
_METADATA_KEYS = frozenset(
    {
        "modelId",
        "model",
        "role",
        "type",
        "stopReason",
        "stop_reason",
        "finish_reason",
        "completionReason",
        "action",
        "status",
        "anthropic_version",
        "schemaVersion",
        "contentType",
        "accept",
        "guardrailIdentifier",
        "guardrailVersion",
        "invocationArn",
        "latency",
        "serviceTier",
        "trace",
    }
)

REDACTION_FAILED = "[redaction failed: content withheld]"


def metadata_only(value: Any, key: str | None = None) -> Any:
    """``value`` without its content: numbers, booleans and descriptive strings remain."""
    if isinstance(value, Mapping):
        kept = {}
        for item_key, item in value.items():
            new = metadata_only(item, item_key)
            if new is not None and new != {} and new != []:
                kept[item_key] = new
        return kept
    if isinstance(value, list):
        items = [metadata_only(item, key) for item in value]
        return [item for item in items if item is not None and item != {} and item != []]
    if isinstance(value, str):
        return value if key in _METADATA_KEYS else None
    return value


def _string_chars(text: str) -> int:
    """The exact JSON size of a string (quotes included), as MLflow serialises it."""
    # Printable ASCII without a quote or backslash is written as it is (the common case,
    # checked at C speed); anything else is measured by serialising it.
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return len(text) + 2
    return len(json.dumps(text, ensure_ascii=False))


# Upper bounds of the JSON text of a float (repr, e.g. "-2.2250738585072014e-308") and of the
# separators json.dumps writes by default (", " between items, ": " after a key).
_FLOAT_CHARS = 24
_ITEM_SEP = 2
_KEY_SEP = 2


def _upper_chars(value: Any, budget: int) -> int:
    """An upper bound of the JSON size, exact for strings; stops once it passes ``budget``."""
    total = 0
    stack = [value]
    while stack and total <= budget:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            total += _string_chars(item)
        elif kind is dict:  # exact types first: isinstance against the ABCs costs more
            total += _mapping_chars(item, stack, budget)
        elif kind is list:
            total += 2 + _ITEM_SEP * len(item)
            stack.extend(item)
        elif kind is bool or item is None:
            total += 5
        elif kind is int:
            # digits of |n| <= bit_length * log10(2) + 1, plus a sign
            total += item.bit_length() * 30103 // 100000 + 2
        elif kind is float:
            total += _FLOAT_CHARS
        elif isinstance(item, Mapping):
            total += _mapping_chars(item, stack, budget)
        else:
            return budget + 1  # unknown to this walk (tuples, other types): serialise to know
    return total


def _mapping_chars(item: Mapping[Any, Any], stack: list[Any], budget: int) -> int:
    """The braces, keys and separators of a mapping; its values go on ``stack``."""
    total = 2
    for key, nested in item.items():
        key_chars = _string_chars(key) if isinstance(key, str) else budget + 1
        total += key_chars + _KEY_SEP + _ITEM_SEP
        stack.append(nested)
    return total


def _cap(value: Any, limit: int) -> tuple[Any, bool, str | None]:
    # Plain JSON (almost always) is serialised once: its exact size, and the text the span
    # stores. Anything else is measured, and serialised only when it may be over the cap.
    text = json_text(value)
    if text is None:
        if _upper_chars(value, limit) <= limit:
            return value, False, None
        text = json.dumps(value, ensure_ascii=False, default=str)
        if len(text) <= limit:
            return value, False, None
    elif len(text) <= limit:
        return value, False, text
    preview = _preview(text, limit)
    return (
        {
            K.TRUNCATED: {"original_chars": len(text), "kept_chars": len(preview)},
            "preview": preview,
        },
        True,
        None,
    )


def _preview(text: str, limit: int) -> str:
    """The start of ``text`` whose own JSON form (quotes and escapes included) fits ``limit``."""
    preview = text[: max(limit - 2, 0)]
    excess = _string_chars(preview) - limit
    if excess > 0:
        # Every character takes at least one place in the JSON form: cutting ``excess`` of
        # them brings it within the limit.
        preview = preview[: len(preview) - excess]
    return preview


def record(config: TraceConfig, kind: str, value: Any) -> tuple[Any, bool]:
    """The form of ``value`` that may be recorded; True when it was truncated.

    Args:
        kind: ``"inputs"``, ``"outputs"``, ``"event"`` or ``"messages"``, passed to the hook.
    """
    value, truncated, _text = _record(config, kind, value)
    return value, truncated


def _record(config: TraceConfig, kind: str, value: Any) -> tuple[Any, bool, str | None]:
    if value is None:
        return None, False, None
    if not config.capture_content:
        value = metadata_only(value)
    if config.redact is not None:
        redacted: Any = REDACTION_FAILED  # what is recorded if the hook fails: nothing
        with _guard_redact:
            redacted = config.redact(kind, value)
        value = redacted
    cut = False
    if config.include_binary:  # binary content kept in full: attachments where MLflow can
        value, cut = _attachments.attach(value, kind, config.max_payload_chars)
    value, truncated, text = _cap(value, config.max_payload_chars)
    return value, truncated or cut, text


def event_text(config: TraceConfig, text: str) -> str:
    """A stream event's JSON text as it may be recorded (the common case costs nothing)."""
    if config.capture_content and config.redact is None and len(text) <= config.max_payload_chars:
        return text
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        payload = text
    value, _ = record(config, "event", payload)
    return json.dumps(value, ensure_ascii=False, default=str)


def prepare(config: TraceConfig, kind: str, value: Any, attributes: dict[str, Any]) -> Payload:
    """``record`` for span inputs or outputs, noting truncation, and the chat messages too."""
    value, truncated, text = _record(config, kind, value)
    if truncated and kind not in attributes.get(K.TRUNCATED, ()):
        attributes[K.TRUNCATED] = [*attributes.get(K.TRUNCATED, ()), kind]
    # The chat attributes carry content too: the same controls apply to them.
    for key, key_kind in ((CHAT_MESSAGES, "messages"), (CHAT_TOOLS, "tools")):
        content = attributes.get(key)
        if content is not None:
            if config.capture_content:
                recorded, _, recorded_text = _record(config, key_kind, content)
                attributes[key] = Payload(recorded, recorded_text)
            else:
                del attributes[key]
    return Payload(value, text)
