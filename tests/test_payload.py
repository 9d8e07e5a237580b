"""invoke_model bodies: decoding for the span gives what the full walk gives, however encoded.

``decode_json_body`` skips the walk over a short body; any shortcut of that kind must give the
walk's answer. These tests hold it to that on arbitrary JSON and on the encodings that could
fool a check of the raw text (escaped slashes, ``\\u`` escapes, data URIs with a short base64
part, deep nesting).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bedrock_trace._payload import MIN_BASE64_CHARS, decode_json_body, json_safe

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
B64 = base64.b64encode(PNG).decode("ascii")


def walked(raw: bytes | str, include_binary: bool = False) -> Any:
    return json_safe(json.loads(raw), include_binary, base64_strings=True)


def check(raw: bytes | str) -> None:
    for include_binary in (False, True):
        for body in (raw, raw.encode() if isinstance(raw, str) else raw.decode()):
            value, reason = decode_json_body(
                body, include_binary=include_binary, max_raw_chars=10**6
            )
            assert reason is None
            assert value == walked(body, include_binary)
            assert json.dumps(value) == json.dumps(walked(body, include_binary))


def anthropic(content: Any) -> dict[str, Any]:
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": content}],
    }


# A data URI of 256 characters or more whose base64 part is shorter than that.
SHORT_B64 = base64.b64encode(PNG[:180]).decode("ascii")
LONG_TYPE_URI = (
    "data:application/vnd.openxmlformats-officedocument.wordprocessingml.document;base64,"
    + SHORT_B64
)
assert len(LONG_TYPE_URI) >= MIN_BASE64_CHARS > len(SHORT_B64)
ESCAPED_START = [rf"\u{ord(c):04x}" for c in B64[:6]]
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": B64}}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(json.dumps(anthropic("Tell me a story. " * 40)), id="long natural text"),
        pytest.param(json.dumps(anthropic([IMAGE])), id="base64 image"),
        pytest.param(json.dumps(anthropic([IMAGE])).replace("/", "\\/"), id="slashes escaped"),
        pytest.param(
            json.dumps(anthropic([IMAGE])).replace(B64[:6], "".join(ESCAPED_START)),
            id="base64 with unicode escapes",
        ),
        pytest.param(json.dumps(anthropic(f"data:image/png;base64,{B64}")), id="data URI"),
        pytest.param(
            json.dumps(anthropic("data:image/png;base64," + B64)).replace("data", "\\u0064ata"),
            id="data URI escaped",
        ),
        pytest.param(json.dumps(anthropic("data:text/plain;base64,aGk=")), id="short data URI"),
        pytest.param(json.dumps(anthropic(LONG_TYPE_URI)), id="data URI, payload under 256"),
        pytest.param(
            json.dumps(anthropic(LONG_TYPE_URI)).replace(";", "\\u003b"),
            id="data URI, payload under 256, escaped",
        ),
        pytest.param(json.dumps(anthropic("A" * MIN_BASE64_CHARS)), id="base64 alphabet run"),
        pytest.param(json.dumps(anthropic("A" * (MIN_BASE64_CHARS - 2) + "==")), id="padded"),
        pytest.param(json.dumps(anthropic("A" * (MIN_BASE64_CHARS - 1))), id="one short"),
        pytest.param(json.dumps(anthropic("é" * 300)), id="non-ascii escaped"),
        pytest.param(json.dumps(anthropic("é" * 300), ensure_ascii=False), id="non-ascii raw"),
        pytest.param("[" * 150 + "]" * 150, id="nested too deep"),
        pytest.param(json.dumps({"a": [[[[[{"b": "x" * 300}]]]]]}), id="nested, not too deep"),
        pytest.param(json.dumps({"k" * 300: 1, "v": "word " * 100}), id="long key"),
        pytest.param(json.dumps({B64: "key is base64"}), id="base64 key"),
    ],
)
def test_bodies_decode_as_the_walk_decodes_them(raw: str) -> None:
    check(raw)


_text = st.text(alphabet=st.sampled_from('Aa0+/=\\ é"x:;,'), max_size=600)
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | _text
    | st.sampled_from([B64, f"data:image/png;base64,{B64}", "A" * 300]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_text | st.sampled_from(["data", "source"]), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_values, st.booleans())
def test_any_json_decodes_as_the_walk_decodes_it(value: Any, ascii_only: bool) -> None:
    check(json.dumps(value, ensure_ascii=ascii_only))
