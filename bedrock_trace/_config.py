"""Tracing configuration."""

from __future__ import annotations

import attrs


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


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
    """

    include_binary: bool = False
    max_raw_body_chars: int = attrs.field(default=20_000, validator=_non_negative)
    max_stream_events: int = attrs.field(default=10_000, validator=_non_negative)


DEFAULT_CONFIG = TraceConfig()
