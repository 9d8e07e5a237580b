"""Turning the caller's objects into JSON-safe span payloads without touching them.

The walk copies a container only when something inside it has to change (binary content,
timestamps, objects JSON cannot hold), so the common case costs one pass and no allocation.
MLflow serialises span inputs and outputs as soon as they are set, so a shallow view taken in
the same synchronous call is enough: the caller cannot mutate anything in between.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

# Converse content blocks name their media by a short "format" next to the "source" bytes
# (ImageBlock, DocumentBlock, VideoBlock in the Bedrock Runtime API reference).
_MEDIA_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "pdf": "application/pdf",
    "csv": "text/csv",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html",
    "txt": "text/plain",
    "md": "text/markdown",
    "mkv": "video/x-matroska",
    "mov": "video/quicktime",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "flv": "video/x-flv",
    "mpeg": "video/mpeg",
    "mpg": "video/mpeg",
    "wmv": "video/x-ms-wmv",
    "three_gp": "video/3gpp",
}

_MAX_DEPTH = 100
_SCALARS = (int, float, bool, type(None))

# Base64 inside JSON bodies (images in Anthropic, Nova, Titan, Stability bodies): only strings
# this long are checked, and natural text fails the pattern at its first space.
MIN_BASE64_CHARS = 256
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_DATA_URI = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,")
# Leading bytes of the media types models send and return.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"%PDF", "application/pdf"),
    (b"ID3", "audio/mpeg"),
    (b"OggS", "audio/ogg"),
    (b"\x1aE\xdf\xa3", "video/webm"),
)


def binary_placeholder(data: bytes, media: str | None = None) -> str:
    """A short, stable description of binary content: media type, size and digest."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    kind = media or "application/octet-stream"
    return f"[binary {kind}, {len(data)} bytes, sha256:{digest}]"


class BinaryText(str):
    """Base64 text standing for binary content recorded in full (``include_binary``).

    It is a ``str``, so redaction hooks, JSON and stream events see plain base64 text; right
    before a payload reaches MLflow, ``_attachments`` turns it into an MLflow attachment (or
    plain text where the installed MLflow has none). ``data`` is decoded lazily.
    """

    media: str | None
    _data: bytes | None

    @classmethod
    def of(cls, text: str, media: str | None, data: bytes | None = None) -> BinaryText:
        self = cls(text)
        self.media, self._data = media, data
        return self

    @property
    def data(self) -> bytes:
        """The binary content itself."""
        if self._data is None:
            encoded = self[self.index(",") + 1 :] if self.startswith("data:") else str(self)
            self._data = base64.b64decode(encoded)
        return self._data


def _binary(data: bytes, fmt: str | None, include_binary: bool) -> str:
    media = _MEDIA_TYPES.get(fmt, fmt) if fmt else None
    if include_binary:
        return BinaryText.of(base64.b64encode(data).decode("ascii"), media, data)
    return binary_placeholder(data, media)


def sniff_media_type(data: bytes) -> str | None:
    """The media type of binary content from its first bytes, when recognisable."""
    for magic, media in _MAGIC:
        if data.startswith(magic):
            return media
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE"):
        return "image/webp" if data[8:12] == b"WEBP" else "audio/wav"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    return None


def _base64_binary(text: str, include_binary: bool) -> str | None:
    """A placeholder (or, with ``include_binary``, a :class:`BinaryText`) for base64 text (or a
    base64 data URI) standing for binary content; None for any other text."""
    media, original = None, text
    if text.startswith("data:"):
        match = _DATA_URI.match(text)
        if match is None:
            return None
        media, text = match.group(1), text[match.end() :]
    elif len(text) % 4 or not _BASE64.fullmatch(text):
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    media = media or sniff_media_type(data)
    if include_binary:
        return BinaryText.of(original, media, data)
    return binary_placeholder(data, media)


def json_safe(value: Any, include_binary: bool = False, *, base64_strings: bool = False) -> Any:
    """Return ``value`` in a form MLflow can serialise faithfully, never mutating it.

    Binary content becomes a placeholder (or base64 text with ``include_binary``),
    timestamps become ISO-8601 text, and objects JSON cannot represent become a short
    ``<module.Type>`` marker (their ``str`` may have side effects, so it is not called).
    With ``base64_strings`` (decoded invoke_model bodies), long base64 strings and base64 data
    URIs are binary content too.
    """
    return _walk(value, include_binary, None, 0, base64_strings)


def _walk(value: Any, include_binary: bool, fmt: str | None, depth: int, b64: bool) -> Any:
    kind = type(value)
    if kind is str:
        if b64 and len(value) >= MIN_BASE64_CHARS:
            return _base64_binary(value, include_binary) or value
        return value
    if kind is int or kind is float or kind is bool or value is None:
        return value  # exact types first: the isinstance checks below cost more
    if isinstance(value, str):
        return value
    if isinstance(value, _SCALARS):
        return value
    if depth >= _MAX_DEPTH:
        return "[nested too deep]"
    if kind is dict or isinstance(value, Mapping):
        fmt_here = value.get("format")
        if not isinstance(fmt_here, str):
            fmt_here = fmt
        out: dict[Any, Any] | None = None if kind is dict else {}
        for key, item in value.items():
            new = _walk(item, include_binary, fmt_here, depth + 1, b64)
            if out is None:
                if new is item:
                    continue
                out = {}
                for done_key, done_item in value.items():
                    if done_key == key:
                        break
                    out[done_key] = done_item
            out[key if isinstance(key, str) else str(key)] = new
        return value if out is None else out
    if kind is list or isinstance(value, (list, tuple)):
        items: list[Any] | None = None if kind is list else []
        for index, item in enumerate(value):
            new = _walk(item, include_binary, fmt, depth + 1, b64)
            if items is None:
                if new is item:
                    continue
                items = list(value[:index])
            items.append(new)
        return value if items is None else items
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _binary(bytes(value), fmt, include_binary)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return [_walk(item, include_binary, fmt, depth + 1, b64) for item in value]
    return f"<{kind.__module__}.{kind.__qualname__}>"


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters with an explicit marker saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[truncated {len(text) - limit} of {len(text)} chars]"


def decode_json_body(
    raw: bytes | bytearray | str, *, include_binary: bool, max_raw_chars: int
) -> tuple[Any, str | None]:
    """Decode an invoke_model request or response body for recording.

    Returns:
        ``(value, None)`` for a JSON body (binary content inside made JSON-safe), else
        ``(bounded text or binary placeholder, reason it could not be parsed)``.
    """
    try:
        decoded = json.loads(raw)
    except ValueError as error:
        reason = f"body is not valid JSON: {error}"
    except RecursionError:
        reason = "body is nested too deeply to decode"
    else:
        if len(raw) < MIN_BASE64_CHARS and len(raw) < 2 * _MAX_DEPTH:
            # No string in it is long enough to be binary content, nor is it nested deeply
            # enough to be cut: json_safe would return it unchanged.
            return decoded, None
        return json_safe(decoded, include_binary, base64_strings=True), None
    if isinstance(raw, str):
        return truncate(raw, max_raw_chars), reason
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return _binary(bytes(raw), None, include_binary), "body is binary, not JSON"
    return truncate(text, max_raw_chars), reason
