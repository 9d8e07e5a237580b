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
from bedrock_trace._guard import Guard
from bedrock_trace._keys import CHAT_MESSAGES

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


def _rough_chars(value: Any, budget: int) -> int:
    """A lower bound of the JSON size, stopping once it passes ``budget`` (no serialising)."""
    total = 0
    stack = [value]
    while stack and total <= budget:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            total += len(item) + 2
        elif kind is dict or isinstance(item, Mapping):
            total += 2
            for key, nested in item.items():
                total += len(key) + 4
                stack.append(nested)
        elif isinstance(item, list):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += 4
    return total


def _cap(value: Any, limit: int, size_hint: int | None) -> tuple[Any, bool]:
    # size_hint: an upper bound of the payload's JSON size known for free (the request or
    # response bytes on the wire), which saves walking the payload to estimate it.
    estimate = size_hint if size_hint is not None else _rough_chars(value, limit)
    if estimate <= limit // 2:
        return value, False  # clearly small: no need to serialise twice
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return value, False
    return {
        K.TRUNCATED: {"original_chars": len(text), "kept_chars": limit},
        "preview": text[:limit],
    }, True


def record(
    config: TraceConfig, kind: str, value: Any, size_hint: int | None = None
) -> tuple[Any, bool]:
    """The form of ``value`` that may be recorded; True when it was truncated.

    Args:
        kind: ``"inputs"``, ``"outputs"``, ``"event"`` or ``"messages"``, passed to the hook.
        size_hint: an upper bound of the JSON size of ``value``, if one is known.
    """
    if value is None:
        return None, False
    if not config.capture_content:
        value = metadata_only(value)
    if config.redact is not None:
        redacted: Any = REDACTION_FAILED  # what is recorded if the hook fails: nothing
        with _guard_redact:
            redacted = config.redact(kind, value)
        value = redacted
        size_hint = None  # the hook may have made it bigger
    cut = False
    if config.include_binary:  # binary content kept in full: attachments where MLflow can
        value, cut = _attachments.attach(value, kind, config.max_payload_chars)
    value, truncated = _cap(value, config.max_payload_chars, size_hint)
    return value, truncated or cut


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


def prepare(
    config: TraceConfig,
    kind: str,
    value: Any,
    attributes: dict[str, Any],
    size_hint: int | None = None,
) -> Any:
    """``record`` for span inputs or outputs, noting truncation, and the chat messages too."""
    value, truncated = record(config, kind, value, size_hint)
    if truncated:
        attributes[K.TRUNCATED] = [*attributes.get(K.TRUNCATED, ()), kind]
    messages = attributes.get(CHAT_MESSAGES)
    if messages is not None:
        if config.capture_content:
            attributes[CHAT_MESSAGES], _ = record(config, "messages", messages)
        else:
            del attributes[CHAT_MESSAGES]
    return value
