"""Encoder for the AWS event-stream framing (``application/vnd.amazon.eventstream``).

Streaming Bedrock Runtime responses are a sequence of self-delimiting binary messages::

    prelude   total length (uint32) | headers length (uint32) | CRC32 of those 8 bytes
    headers   repeated: name length (uint8) | name (UTF-8) | value type (uint8) | value
    payload   opaque bytes (JSON for Bedrock)
    trailer   CRC32 of every preceding byte of the message, prelude included

Integers are big-endian and the CRC is the common CRC-32 (zlib / gzip).  Value types: 0 and 1
are true and false (no value bytes), 2-5 are signed 8/16/32/64-bit integers, 6 (byte array) and
7 (UTF-8 string) are a uint16 length followed by the bytes, 8 is a timestamp (int64 milliseconds
since the Unix epoch) and 9 is a UUID (16 raw bytes).  This module only encodes; botocore's
``EventStreamBuffer`` is the decoder it is tested against.
"""

from __future__ import annotations

import base64
import json
import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final, TypeAlias

__all__ = [
    "MAX_HEADERS_LENGTH",
    "MAX_HEADER_NAME_LENGTH",
    "MAX_HEADER_VALUE_LENGTH",
    "MAX_MESSAGE_LENGTH",
    "Byte",
    "HeaderValue",
    "Int32",
    "Int64",
    "Short",
    "chunk_event",
    "encode_headers",
    "encode_message",
    "error_message",
    "event_message",
    "exception_message",
]

#: Longest header name, in UTF-8 bytes (the name length is a single unsigned byte).
MAX_HEADER_NAME_LENGTH: Final = 255
#: Longest byte-array or string header value, in bytes (INT16_MAX, as AWS's own encoders use).
MAX_HEADER_VALUE_LENGTH: Final = 32_767
#: Largest encoded headers section, in bytes.
MAX_HEADERS_LENGTH: Final = 128 * 1024
#: Largest whole message (prelude, headers, payload and trailer), in bytes.
MAX_MESSAGE_LENGTH: Final = 16 * 1024 * 1024

_PRELUDE_LENGTH: Final = 12  # total length, headers length, prelude CRC
_TRAILER_LENGTH: Final = 4  # message CRC

_TRUE: Final = 0
_FALSE: Final = 1
_BYTE: Final = 2
_SHORT: Final = 3
_INT32: Final = 4
_INT64: Final = 5
_BYTE_ARRAY: Final = 6
_STRING: Final = 7
_TIMESTAMP: Final = 8
_UUID: Final = 9

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND: Final = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Byte:
    """An integer header value sent as a signed 8-bit byte (type 2)."""

    value: int


@dataclass(frozen=True)
class Short:
    """An integer header value sent as a signed 16-bit short (type 3)."""

    value: int


@dataclass(frozen=True)
class Int32:
    """An integer header value sent as a signed 32-bit integer (type 4), whatever its size."""

    value: int


@dataclass(frozen=True)
class Int64:
    """An integer header value sent as a signed 64-bit long (type 5), whatever its size."""

    value: int


#: What a header value may be.  Plain ``int`` becomes int32 when it fits, else int64; the
#: wrappers pick a width explicitly.  ``datetime`` must be timezone-aware.
HeaderValue: TypeAlias = (
    bool | int | str | bytes | datetime | uuid.UUID | Byte | Short | Int32 | Int64
)

# Bit width -> (struct format, type byte).
_INT_FORMATS: Final[dict[int, tuple[str, int]]] = {
    8: ("!b", _BYTE),
    16: ("!h", _SHORT),
    32: ("!i", _INT32),
    64: ("!q", _INT64),
}


def _crc32(data: bytes, start: int = 0) -> int:
    return zlib.crc32(data, start) & 0xFFFFFFFF


def _fits(value: int, bits: int) -> bool:
    return -(1 << (bits - 1)) <= value < (1 << (bits - 1))


def _encode_int(name: str, value: int, bits: int) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"header {name!r}: a {bits}-bit integer value must be an int")
    if not _fits(value, bits):
        raise ValueError(
            f"header {name!r}: {value} is out of range for a signed {bits}-bit integer"
        )
    fmt, type_byte = _INT_FORMATS[bits]
    return bytes((type_byte,)) + struct.pack(fmt, value)


def _encode_variable(name: str, type_byte: int, data: bytes, kind: str) -> bytes:
    if len(data) > MAX_HEADER_VALUE_LENGTH:
        raise ValueError(
            f"header {name!r}: {kind} value is {len(data)} bytes, "
            f"more than the maximum of {MAX_HEADER_VALUE_LENGTH}"
        )
    return struct.pack("!BH", type_byte, len(data)) + data


def _encode_timestamp(name: str, value: datetime) -> bytes:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"header {name!r}: timestamp must be a timezone-aware datetime "
            "(a naive one is ambiguous)"
        )
    millis = (value - _EPOCH) // _MILLISECOND
    return bytes((_TIMESTAMP,)) + struct.pack("!q", millis)


def _encode_value(name: str, value: HeaderValue) -> bytes:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return bytes((_TRUE if value else _FALSE,))
    if isinstance(value, int):
        return _encode_int(name, value, 32 if _fits(value, 32) else 64)
    if isinstance(value, Byte):
        return _encode_int(name, value.value, 8)
    if isinstance(value, Short):
        return _encode_int(name, value.value, 16)
    if isinstance(value, Int32):
        return _encode_int(name, value.value, 32)
    if isinstance(value, Int64):
        return _encode_int(name, value.value, 64)
    if isinstance(value, str):
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"header {name!r}: string value is not valid UTF-8: {exc}") from None
        return _encode_variable(name, _STRING, data, "string")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _encode_variable(name, _BYTE_ARRAY, bytes(value), "byte array")
    if isinstance(value, datetime):
        return _encode_timestamp(name, value)
    if isinstance(value, uuid.UUID):
        return bytes((_UUID,)) + value.bytes
    raise ValueError(
        f"header {name!r}: unsupported value type {type(value).__name__}; expected bool, int, "
        "str, bytes, datetime, uuid.UUID, Byte, Short, Int32 or Int64"
    )


def _encode_name(name: str) -> bytes:
    if not isinstance(name, str):
        raise ValueError(f"header names must be str, not {type(name).__name__}")
    try:
        data = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"header name {name!r} is not valid UTF-8: {exc}") from None
    if not data:
        raise ValueError("header names must not be empty")
    if len(data) > MAX_HEADER_NAME_LENGTH:
        raise ValueError(
            f"header name {name[:40]!r}... is {len(data)} bytes, "
            f"more than the maximum of {MAX_HEADER_NAME_LENGTH}"
        )
    return bytes((len(data),)) + data


def encode_headers(headers: Mapping[str, HeaderValue]) -> bytes:
    """Encode the headers section of a message (without its length, which is in the prelude)."""
    encoded = b"".join(
        _encode_name(name) + _encode_value(name, value) for name, value in headers.items()
    )
    if len(encoded) > MAX_HEADERS_LENGTH:
        raise ValueError(
            f"encoded headers are {len(encoded)} bytes, "
            f"more than the maximum of {MAX_HEADERS_LENGTH}"
        )
    return encoded


def encode_message(headers: Mapping[str, HeaderValue], payload: bytes) -> bytes:
    """Encode one complete event-stream message: prelude, headers, payload and message CRC.

    Raises ``ValueError`` for an invalid header name or value, or when the headers or the whole
    message exceed the format's size limits.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ValueError(f"payload must be bytes, not {type(payload).__name__}")
    payload = bytes(payload)
    encoded_headers = encode_headers(headers)
    total_length = _PRELUDE_LENGTH + len(encoded_headers) + len(payload) + _TRAILER_LENGTH
    if total_length > MAX_MESSAGE_LENGTH:
        raise ValueError(
            f"message would be {total_length} bytes, more than the maximum of "
            f"{MAX_MESSAGE_LENGTH} (payload is {len(payload)} bytes)"
        )
    lengths = struct.pack("!II", total_length, len(encoded_headers))
    prelude = lengths + struct.pack("!I", _crc32(lengths))
    body = prelude + encoded_headers + payload
    return body + struct.pack("!I", _crc32(body))


def _json_default(obj: object) -> Any:
    # json.dumps only knows dict; accept any Mapping anywhere in the document.
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    text = json.dumps(
        dict(document),
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )
    return text.encode("utf-8")


def event_message(
    event_type: str,
    payload: Mapping[str, Any] | bytes,
    content_type: str = "application/json",
) -> bytes:
    """Encode an ``event`` message; a Mapping payload is sent as compact UTF-8 JSON."""
    body = payload if isinstance(payload, (bytes, bytearray)) else _json_bytes(payload)
    return encode_message(
        {
            ":message-type": "event",
            ":event-type": event_type,
            ":content-type": content_type,
        },
        bytes(body),
    )


def exception_message(exception_type: str, message: str) -> bytes:
    """Encode a modeled ``exception`` message, as for ``throttlingException``."""
    return encode_message(
        {
            ":message-type": "exception",
            ":exception-type": exception_type,
            ":content-type": "application/json",
        },
        _json_bytes({"message": message}),
    )


def error_message(code: str, message: str) -> bytes:
    """Encode an unmodeled ``error`` message; code and message travel in headers only."""
    return encode_message(
        {
            ":message-type": "error",
            ":error-code": code,
            ":error-message": message,
        },
        b"",
    )


def chunk_event(body: Mapping[str, Any] | bytes) -> bytes:
    """Encode an InvokeModelWithResponseStream ``chunk`` event carrying ``body``.

    The model's output travels base64-encoded in the ``bytes`` member of the event's JSON
    payload; a Mapping ``body`` is JSON-encoded first.
    """
    raw = body if isinstance(body, (bytes, bytearray)) else _json_bytes(body)
    return event_message("chunk", {"bytes": base64.b64encode(bytes(raw)).decode("ascii")})
