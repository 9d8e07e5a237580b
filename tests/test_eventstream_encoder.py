"""The event-stream encoder, checked against botocore's own decoder and event-stream parser."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import botocore.session
import pytest
from botocore.eventstream import ChecksumMismatch, EventStream, EventStreamBuffer
from botocore.exceptions import EventStreamError
from botocore.parsers import EventStreamJSONParser
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_trace._eventstream import (
    MAX_HEADER_NAME_LENGTH,
    MAX_HEADER_VALUE_LENGTH,
    MAX_HEADERS_LENGTH,
    MAX_MESSAGE_LENGTH,
    Byte,
    HeaderValue,
    Int32,
    Int64,
    Short,
    chunk_event,
    encode_message,
    error_message,
    event_message,
    exception_message,
)

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SAMPLE_UUID = uuid.UUID("12345678-9abc-4def-8123-456789abcdef")

# Enough examples to hit edge cases (int widths, empty values, cuts at 0 and the end).
PROPERTY = settings(max_examples=150)


# --- helpers -------------------------------------------------------------------------------


def decode(*chunks: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """Feed ``chunks`` to botocore's EventStreamBuffer one by one; return (headers, payload)s."""
    buffer = EventStreamBuffer()
    messages: list[tuple[dict[str, Any], bytes]] = []
    for chunk in chunks:
        buffer.add_data(chunk)
        messages.extend((message.headers, message.payload) for message in buffer)
    return messages


def decoded_form(value: HeaderValue) -> object:
    """What botocore's header parser yields for a header value we encoded."""
    if isinstance(value, (Byte, Short, Int32, Int64)):
        return value.value
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(milliseconds=1)  # timestamps come back as raw ms
    if isinstance(value, uuid.UUID):
        return value.bytes  # UUIDs come back as their 16 raw bytes
    return value


def header_type_byte(message: bytes) -> int:
    """The value-type byte of the first header of a message whose first header name is 1 byte."""
    assert message[12] == 1, "helper expects a one-byte first header name"
    return message[14]


class FakeRawStream:
    """Stands in for the HTTP body: ``EventStream`` only calls ``.stream()`` (and ``.close()``)."""

    def __init__(self, data: bytes, chunk_size: int = 7) -> None:
        self._data = data
        self._chunk_size = chunk_size

    def stream(self) -> Iterator[bytes]:
        for start in range(0, len(self._data), self._chunk_size):
            yield self._data[start : start + self._chunk_size]

    def close(self) -> None:
        pass


def parse_stream(operation: str, member: str, *messages: bytes) -> EventStream:
    """botocore's EventStream over ``messages`` for the bedrock-runtime operation's output."""
    service = botocore.session.get_session().get_service_model("bedrock-runtime")
    shape = service.operation_model(operation).output_shape.members[member]
    raw = FakeRawStream(b"".join(messages))
    return EventStream(raw, shape, EventStreamJSONParser(), operation)


# --- strategies ----------------------------------------------------------------------------

header_names = st.text(min_size=1, max_size=24).filter(
    lambda name: len(name.encode("utf-8")) <= MAX_HEADER_NAME_LENGTH
)
header_values: st.SearchStrategy[HeaderValue] = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.builds(Byte, st.integers(-(2**7), 2**7 - 1)),
    st.builds(Short, st.integers(-(2**15), 2**15 - 1)),
    st.builds(Int32, st.integers(-(2**31), 2**31 - 1)),
    st.builds(Int64, st.integers(-(2**63), 2**63 - 1)),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.datetimes(
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone.min])
    ),
    st.uuids(),
)
header_dicts = st.dictionaries(header_names, header_values, max_size=8)
payloads = st.binary(max_size=300)
message_parts = st.tuples(header_dicts, payloads)


class TestEventStreamEncoder:
    @pytest.mark.parametrize(
        ("value", "type_byte", "expected"),
        [
            pytest.param(True, 0, True, id="bool-true"),
            pytest.param(False, 1, False, id="bool-false"),
            pytest.param(Byte(-128), 2, -128, id="byte"),
            pytest.param(Short(32_767), 3, 32_767, id="short"),
            pytest.param(Int32(-(2**31)), 4, -(2**31), id="int32"),
            pytest.param(42, 4, 42, id="int-as-int32"),
            pytest.param(Int64(2**63 - 1), 5, 2**63 - 1, id="int64"),
            pytest.param(-(2**40), 5, -(2**40), id="int-as-int64"),
            pytest.param(b"\x00\xffraw", 6, b"\x00\xffraw", id="byte-array"),
            pytest.param("h\u00e9llo \u2603", 7, "h\u00e9llo \u2603", id="string"),
            pytest.param(
                datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
                8,
                1_714_979_289_123,
                id="timestamp",
            ),
            pytest.param(SAMPLE_UUID, 9, SAMPLE_UUID.bytes, id="uuid"),
        ],
    )
    def test_each_header_type_round_trips_through_botocore(
        self, value: HeaderValue, type_byte: int, expected: object
    ) -> None:
        """Every header value type is written with its type byte and decoded back by botocore."""
        message = encode_message({"h": value, ":other": "x"}, b"payload")

        assert header_type_byte(message) == type_byte
        assert decode(message) == [({"h": expected, ":other": "x"}, b"payload")]

    @pytest.mark.parametrize(
        ("value", "type_byte"),
        [(2**31 - 1, 4), (2**31, 5), (-(2**31), 4), (-(2**31) - 1, 5)],
    )
    def test_plain_int_uses_int32_exactly_when_it_fits(self, value: int, type_byte: int) -> None:
        """A plain int is sent as int32 inside the signed 32-bit range and as int64 outside it."""
        message = encode_message({"n": value}, b"")

        assert header_type_byte(message) == type_byte
        assert decode(message) == [({"n": value}, b"")]

    def test_timestamp_with_offset_and_before_epoch_is_milliseconds_since_epoch(self) -> None:
        """A timestamp is the instant in whole milliseconds since 1970-01-01T00:00Z, floored."""
        plus_two = timezone(timedelta(hours=2))
        message = encode_message(
            {
                "a": datetime(1970, 1, 1, 2, 0, 1, tzinfo=plus_two),
                "b": datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC),
            },
            b"",
        )

        assert decode(message) == [({"a": 1000, "b": -1}, b"")]

    def test_message_without_headers_or_payload_is_sixteen_bytes(self) -> None:
        """The smallest message is just the prelude and trailer, and botocore accepts it."""
        message = encode_message({}, b"")

        assert len(message) == 16
        assert decode(message) == [({}, b"")]

    def test_prelude_records_total_and_header_lengths(self) -> None:
        """The prelude's two big-endian lengths describe the whole message and its headers."""
        message = encode_message({"ab": "cd"}, b"xyz")
        header_bytes = 1 + 2 + 1 + 2 + 2  # name len, name, type, value len, value

        assert int.from_bytes(message[0:4], "big") == len(message) == 12 + header_bytes + 3 + 4
        assert int.from_bytes(message[4:8], "big") == header_bytes

    @PROPERTY
    @given(headers=header_dicts, payload=payloads)
    def test_arbitrary_headers_and_payload_round_trip(
        self, headers: dict[str, HeaderValue], payload: bytes
    ) -> None:
        """Any valid header mapping and payload decode back to the same values in botocore."""
        expected = {name: decoded_form(value) for name, value in headers.items()}

        assert decode(encode_message(headers, payload)) == [(expected, payload)]

    @PROPERTY
    @given(batch=st.lists(message_parts, min_size=1, max_size=5), data=st.data())
    def test_concatenated_messages_split_anywhere_decode_in_order(
        self, batch: list[tuple[dict[str, HeaderValue], bytes]], data: st.DataObject
    ) -> None:
        """Several messages in one byte stream, cut at arbitrary offsets, all decode in order."""
        stream = b"".join(encode_message(headers, payload) for headers, payload in batch)
        cuts = data.draw(
            st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=12), label="cuts"
        )
        bounds = [0, *sorted(cuts), len(stream)]
        chunks = [stream[start:end] for start, end in itertools.pairwise(bounds)]
        expected = [
            ({name: decoded_form(value) for name, value in headers.items()}, payload)
            for headers, payload in batch
        ]

        assert decode(*chunks) == expected

    @PROPERTY
    @given(
        headers=header_dicts,
        payload=payloads,
        data=st.data(),
    )
    def test_any_corrupted_byte_fails_botocore_checksum(
        self, headers: dict[str, HeaderValue], payload: bytes, data: st.DataObject
    ) -> None:
        """Changing any one byte of a message makes botocore reject a prelude or message CRC."""
        message = bytearray(encode_message(headers, payload))
        position = data.draw(st.integers(0, len(message) - 1), label="position")
        message[position] ^= data.draw(st.integers(1, 255), label="xor mask")

        with pytest.raises(ChecksumMismatch):
            decode(bytes(message))

    @pytest.mark.parametrize(
        ("region", "offset"),
        [("prelude crc", 8), ("headers", 13), ("payload", -5), ("message crc", -1)],
    )
    def test_corrupted_region_is_rejected_by_botocore(self, region: str, offset: int) -> None:
        """A flipped bit in each region of the message is caught by one of the two CRCs."""
        message = bytearray(event_message("messageStop", {"stopReason": "end_turn"}))
        message[offset] ^= 0x01

        with pytest.raises(ChecksumMismatch):
            decode(bytes(message))

    def test_size_limits_are_accepted_up_to_the_maximum(self) -> None:
        """Header names, values and payloads exactly at their limits encode and decode."""
        name = "n" * MAX_HEADER_NAME_LENGTH
        value = "v" * MAX_HEADER_VALUE_LENGTH
        payload = b"p" * (MAX_MESSAGE_LENGTH - 16)

        assert decode(encode_message({name: value}, b"")) == [({name: value}, b"")]
        assert len(encode_message({}, payload)) == MAX_MESSAGE_LENGTH

    @pytest.mark.parametrize(
        ("headers", "payload", "match"),
        [
            pytest.param({"n" * 256: "x"}, b"", "header name", id="name-too-long"),
            pytest.param({"\u00e9" * 128: "x"}, b"", "256 bytes", id="name-too-long-utf8"),
            pytest.param({"": "x"}, b"", "must not be empty", id="empty-name"),
            pytest.param({"\ud800": "x"}, b"", "not valid UTF-8", id="name-surrogate"),
            pytest.param({"s": "\ud800"}, b"", "not valid UTF-8", id="value-surrogate"),
            pytest.param({"s": "x" * 32_768}, b"", "string value", id="string-too-long"),
            pytest.param({"b": b"x" * 32_768}, b"", "byte array value", id="bytes-too-long"),
            pytest.param({"i": Byte(128)}, b"", "8-bit", id="byte-overflow"),
            pytest.param({"i": Short(-(2**15) - 1)}, b"", "16-bit", id="short-underflow"),
            pytest.param({"i": Int32(2**31)}, b"", "32-bit", id="int32-overflow"),
            pytest.param({"i": Int64(2**63)}, b"", "64-bit", id="int64-overflow"),
            pytest.param({"i": 2**63}, b"", "64-bit", id="int-overflow"),
            pytest.param({"t": datetime(2024, 1, 1)}, b"", "timezone-aware", id="naive-datetime"),
            pytest.param({"f": 1.5}, b"", "unsupported value type float", id="float"),
            pytest.param(
                {f"h{i}": b"x" * MAX_HEADER_VALUE_LENGTH for i in range(5)},
                b"",
                "encoded headers",
                id="headers-too-large",
            ),
            pytest.param({}, b"p" * (MAX_MESSAGE_LENGTH - 15), "message would be", id="too-big"),
            pytest.param({}, "text", "payload must be bytes", id="str-payload"),
        ],
    )
    def test_invalid_input_raises_value_error(
        self, headers: Mapping[str, Any], payload: Any, match: str
    ) -> None:
        """Out-of-range or unsupported headers and oversized messages raise a clear ValueError."""
        assert 5 * MAX_HEADER_VALUE_LENGTH > MAX_HEADERS_LENGTH

        with pytest.raises(ValueError, match=match):
            encode_message(headers, payload)

    def test_event_message_carries_bedrock_headers_and_compact_json(self) -> None:
        """event_message sets the three event headers and sends a Mapping as compact UTF-8 JSON."""
        message = event_message("contentBlockDelta", {"delta": {"text": "h\u00e9"}, "n": 1})

        assert decode(message) == [
            (
                {
                    ":message-type": "event",
                    ":event-type": "contentBlockDelta",
                    ":content-type": "application/json",
                },
                '{"delta":{"text":"h\u00e9"},"n":1}'.encode(),
            )
        ]

    def test_event_message_sends_bytes_payload_verbatim(self) -> None:
        """A bytes payload is sent unchanged with the given content type."""
        message = event_message("blob", b"\x00\x01", content_type="application/octet-stream")

        [(headers, payload)] = decode(message)
        assert headers[":content-type"] == "application/octet-stream"
        assert payload == b"\x00\x01"

    def test_converse_stream_events_parse_to_the_same_dicts(self) -> None:
        """A ConverseStream event sequence parses in botocore to exactly the dicts encoded."""
        events: Sequence[tuple[str, dict[str, Any]]] = [
            ("messageStart", {"role": "assistant"}),
            ("contentBlockDelta", {"delta": {"text": "Hello"}, "contentBlockIndex": 0}),
            ("messageStop", {"stopReason": "end_turn"}),
            (
                "metadata",
                {
                    "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15},
                    "metrics": {"latencyMs": 321},
                },
            ),
        ]
        stream = parse_stream(
            "ConverseStream", "stream", *(event_message(name, body) for name, body in events)
        )

        assert list(stream) == [{name: body} for name, body in events]

    def test_converse_stream_exception_raises_event_stream_error(self) -> None:
        """A throttlingException message makes iteration raise EventStreamError with its code."""
        stream = parse_stream(
            "ConverseStream",
            "stream",
            event_message("messageStart", {"role": "assistant"}),
            exception_message("throttlingException", "Too many requests, slow down."),
        )
        iterator = iter(stream)

        assert next(iterator) == {"messageStart": {"role": "assistant"}}
        with pytest.raises(EventStreamError) as excinfo:
            next(iterator)
        assert excinfo.value.response["Error"] == {
            "Code": "throttlingException",
            "Message": "Too many requests, slow down.",
        }

    def test_error_message_raises_event_stream_error_from_headers(self) -> None:
        """An unmodeled error message surfaces its header code and message in EventStreamError."""
        stream = parse_stream("ConverseStream", "stream", error_message("InternalFailure", "boom"))

        with pytest.raises(EventStreamError) as excinfo:
            list(stream)
        assert excinfo.value.response["Error"] == {"Code": "InternalFailure", "Message": "boom"}

    def test_unmodeled_event_type_is_skipped_by_botocore(self) -> None:
        """botocore drops events whose type is not in the stream shape instead of failing."""
        stream = parse_stream(
            "ConverseStream",
            "stream",
            event_message("futureEvent", {"x": 1}),
            event_message("messageStop", {"stopReason": "end_turn"}),
        )

        assert list(stream) == [{"messageStop": {"stopReason": "end_turn"}}]

    def test_chunk_event_parses_to_invoke_model_stream_chunk(self) -> None:
        """chunk_event base64-wraps a JSON body that botocore hands back as raw bytes."""
        stream = parse_stream(
            "InvokeModelWithResponseStream", "body", chunk_event({"type": "content_block_delta"})
        )

        assert list(stream) == [{"chunk": {"bytes": b'{"type":"content_block_delta"}'}}]

    def test_chunk_event_sends_bytes_body_verbatim(self) -> None:
        """A bytes body is base64-encoded as-is, so arbitrary bytes survive the trip."""
        body = bytes(range(256))
        [(headers, payload)] = decode(chunk_event(body))
        stream = parse_stream("InvokeModelWithResponseStream", "body", chunk_event(body))

        assert headers[":event-type"] == "chunk"
        assert set(json.loads(payload)) == {"bytes"}
        assert list(stream) == [{"chunk": {"bytes": body}}]
