"""Tracing configuration."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs

Redactor = Callable[[str, Any], Any]


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class TraceConfig:
    """What ``bedrock_trace`` records for the calls of one registered target.

    Args:
        include_binary: record binary payloads (images, documents, video in converse messages,
            ``redactedContent`` in reasoning blocks, non-text invoke_model bodies) in full, as
            base64 text. Off by default: each is replaced by a short placeholder naming its
            media type, size and a SHA-256 prefix, which keeps traces small and readable.
        max_raw_body_chars: how much of an invoke_model body that is not valid JSON is kept as
            text on the span (the rest is cut, with a marker saying how much was cut).
        max_stream_events: how many stream events become span events on one streaming span;
            the events beyond this still reach the caller and still count towards the
            rebuilt output, and their number is recorded as ``bedrock_trace.dropped_events``.
        capture_content: record prompts and completions. False keeps metadata only (model,
            parameters, token usage, timings, status, stop reasons) and no text.
        redact: a hook ``redact(kind, value) -> value`` applied to every payload before it is
            recorded; ``kind`` is ``"inputs"``, ``"outputs"``, ``"event"``, ``"messages"`` or
            ``"tools"`` (the tool definitions of ``mlflow.chat.tools``),
            ``value`` is JSON-like (dicts, lists, strings, numbers). If it raises, the payload
            is withheld (replaced by a marker), never recorded unredacted.
        max_payload_chars: the largest JSON size of one recorded payload; a larger one is
            replaced by a preview whose JSON form fits in this many characters and a
            ``bedrock_trace.truncated`` marker, and the span gets the ``bedrock_trace.truncated``
            attribute.
    """

    include_binary: bool = False
    max_raw_body_chars: int = attrs.field(default=20_000, validator=_non_negative)
    max_stream_events: int = attrs.field(default=10_000, validator=_non_negative)
    capture_content: bool = True
    redact: Redactor | None = None
    max_payload_chars: int = attrs.field(default=1_000_000, validator=_positive)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TraceConfig:
        """The defaults, overridden by ``BEDROCK_TRACE_*`` environment variables.

        ``BEDROCK_TRACE_CAPTURE_CONTENT``, ``BEDROCK_TRACE_INCLUDE_BINARY`` (true/false),
        ``BEDROCK_TRACE_MAX_PAYLOAD_CHARS``, ``BEDROCK_TRACE_MAX_RAW_BODY_CHARS``,
        ``BEDROCK_TRACE_MAX_STREAM_EVENTS`` (integers) and ``BEDROCK_TRACE_REDACT``
        (``package.module:function``).

        Raises:
            ValueError: a variable is set to something it cannot mean.
        """
        env = os.environ if environ is None else environ
        fields: dict[str, Any] = {}
        for name in ("capture_content", "include_binary"):
            if (raw := env.get(_ENV + name.upper())) is not None:
                fields[name] = _flag(_ENV + name.upper(), raw)
        for name in ("max_payload_chars", "max_raw_body_chars", "max_stream_events"):
            if (raw := env.get(_ENV + name.upper())) is not None:
                try:
                    fields[name] = int(raw)
                except ValueError:
                    raise ValueError(
                        f"{_ENV}{name.upper()} must be an integer, got {raw!r}"
                    ) from None
        if target := env.get(_ENV + "REDACT"):
            fields["redact"] = _import_hook(target)
        return cls(**fields)


_ENV = "BEDROCK_TRACE_"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _flag(name: str, raw: str) -> bool:
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _import_hook(target: str) -> Redactor:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{_ENV}REDACT must be 'package.module:function', got {target!r}")
    hook = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(hook):
        raise ValueError(f"{_ENV}REDACT: {target!r} is not a callable")
    return hook  # type: ignore[no-any-return]
