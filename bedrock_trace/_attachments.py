"""Binary content as MLflow trace attachments (``include_binary=True``).

MLflow 3.11 and later store an ``mlflow.tracing.attachments.Attachment`` found in span inputs or
outputs as a file of its own next to the trace, put an ``mlflow-attachment://`` reference in
its place, and the trace view shows images inline. With ``include_binary``, the payload walk
marks binary content as :class:`~bedrock_trace._payload.BinaryText`; this module, run last
before the size cap, turns each mark into an attachment while the payload's budget
(``max_payload_chars``, counted in base64 characters, as the text would have cost) lasts, and
into a placeholder after that. Where MLflow has no attachments, or for payloads that cannot
hold them (stream events, attributes), the mark becomes the plain base64 text it stands for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bedrock_trace._payload import BinaryText, binary_placeholder, sniff_media_type

_Attachment: Any
try:
    from mlflow.tracing.attachments import Attachment as _Attachment
except ImportError:  # mlflow-tracing < 3.11
    _Attachment = None

SUPPORTED = _Attachment is not None

# Span inputs and outputs can hold attachments; attributes and events are plain JSON.
ATTACHABLE_KINDS = frozenset({"inputs", "outputs"})


class _Budget:
    def __init__(self, chars: int) -> None:
        self.left = chars
        self.cut = False


def attach(value: Any, kind: str, max_chars: int) -> tuple[Any, bool]:
    """``value`` with its binary marks turned into attachments, placeholders or text.

    Returns:
        the new value (containers copied only where something changed) and whether binary
        content was left out because the payload's budget ran out.
    """
    attachable = SUPPORTED and kind in ATTACHABLE_KINDS
    budget = _Budget(max_chars)
    return _walk(value, attachable, budget), budget.cut


def _walk(value: Any, attachable: bool, budget: _Budget) -> Any:
    if isinstance(value, BinaryText):
        return _convert(value, attachable, budget)
    if isinstance(value, Mapping):
        out: dict[Any, Any] | None = None
        for key, item in value.items():
            new = _walk(item, attachable, budget)
            if new is not item and out is None:
                out = dict(value)
            if out is not None:
                out[key] = new
        return value if out is None else out
    if isinstance(value, list):
        items: list[Any] | None = None
        for index, item in enumerate(value):
            new = _walk(item, attachable, budget)
            if new is not item:
                if items is None:
                    items = list(value)
                items[index] = new
        return value if items is None else items
    return value


def _convert(mark: BinaryText, attachable: bool, budget: _Budget) -> Any:
    if not attachable:
        return str(mark)  # plain text: the size cap applies to it as to any text
    if len(mark) > budget.left:
        budget.cut = True
        data = mark.data
        note = binary_placeholder(data, _content_type(mark.media, data))
        return f"{note[:-1]}, not attached: over max_payload_chars]"
    budget.left -= len(mark)
    data = mark.data
    return _Attachment(content_type=_content_type(mark.media, data), content_bytes=data)


def _content_type(media: str | None, data: bytes) -> str:
    if media and "/" in media:
        return media
    return sniff_media_type(data) or "application/octet-stream"
