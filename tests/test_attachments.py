"""Binary content as MLflow trace attachments: images and documents people can see in the UI."""

from __future__ import annotations

import base64
import copy
import json

import pytest

import bedrock_trace
from bedrock_trace import TraceConfig
from bedrock_trace._attachments import SUPPORTED
from bedrock_trace.testing import converse_response

from .conftest import MODEL_ID
from .test_models import PNG as MODELS_PNG
from .test_models import ROWS

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n" + b"0123456789" * 100
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
PROMPT = "What is in this picture?"

needs_attachments = pytest.mark.skipif(
    not SUPPORTED, reason="this MLflow has no trace attachments (mlflow-tracing < 3.11)"
)


def _image_messages(data: bytes = PNG) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"text": PROMPT},
                {"image": {"format": "png", "source": {"bytes": data}}},
                {"document": {"format": "pdf", "name": "report", "source": {"bytes": PDF}}},
            ],
        }
    ]


def _attachment(span, ref: str) -> tuple[str, bytes]:
    """The content type and bytes an ``mlflow-attachment://`` reference of ``span`` stands for.

    The type comes from the reference (MLflow's public parser); the bytes from the span's
    attachment table, which MLflow uploads next to the trace when it is exported.
    """
    from mlflow.tracing.attachments import Attachment

    parsed = Attachment.parse_ref(ref)
    assert parsed is not None, ref
    assert parsed["trace_id"] == span.trace_id
    attachment = span._attachments[parsed["attachment_id"]]
    assert parsed["size"] == len(attachment.content_bytes)
    return str(parsed["content_type"]), attachment.content_bytes


def _converse(client, stubber, messages) -> None:
    stubber.add_response("converse", converse_response("A small square."))
    client.converse(modelId=MODEL_ID, messages=messages)


class TestConverseAttachments:
    """With include_binary, converse images and documents become attachments."""

    @needs_attachments
    def test_image_and_document_are_attachments(self, capture, client, stubber):
        """Each block's bytes are an attachment of its media type; the text stays inline."""
        bedrock_trace.register(client, config=TraceConfig(include_binary=True))
        _converse(client, stubber, _image_messages())
        (span,) = capture.spans
        text, image, document = span.inputs["messages"][0]["content"]
        assert text == {"text": PROMPT}
        assert image["image"]["format"] == "png"
        assert _attachment(span, image["image"]["source"]["bytes"]) == ("image/png", PNG)
        assert document["document"]["name"] == "report"
        assert _attachment(span, document["document"]["source"]["bytes"]) == (
            "application/pdf",
            PDF,
        )
        assert base64.b64encode(PNG).decode() not in json.dumps(span.to_dict())
        assert "bedrock_trace.truncated" not in span.attributes

    @needs_attachments
    def test_chat_view_shows_the_image(self, capture, client, stubber):
        """mlflow.chat.messages carries the image as an image_url part the UI displays."""
        bedrock_trace.register(client, config=TraceConfig(include_binary=True))
        _converse(client, stubber, _image_messages())
        (span,) = capture.spans
        ref = span.inputs["messages"][0]["content"][1]["image"]["source"]["bytes"]
        assert span.attributes["mlflow.chat.messages"] == [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"{PROMPT}\n[document]"},
                    {"type": "image_url", "image_url": {"url": ref}},
                ],
            },
            {"role": "assistant", "content": "A small square."},
        ]
        assert span.attributes["mlflow.message.format"] == "bedrock"

    def test_no_chat_attribute_without_attachments(self, capture, client, stubber):
        """Placeholders only: the UI reads converse inputs as it always did."""
        _converse(client, stubber, _image_messages())
        (span,) = capture.spans
        assert "mlflow.chat.messages" not in span.attributes

    def test_caller_messages_are_not_touched(self, capture, client, stubber):
        """The caller's message objects still hold their own bytes afterwards."""
        bedrock_trace.register(client, config=TraceConfig(include_binary=True))
        messages = _image_messages()
        before = copy.deepcopy(messages)
        _converse(client, stubber, messages)
        assert messages == before
        assert messages[0]["content"][1]["image"]["source"]["bytes"] is not None

    def test_off_by_default_placeholders(self, capture, client, stubber):
        """Without include_binary: a placeholder naming media type, size and digest."""
        _converse(client, stubber, _image_messages())
        (span,) = capture.spans
        image = span.inputs["messages"][0]["content"][1]["image"]["source"]["bytes"]
        assert image.startswith(f"[binary image/png, {len(PNG)} bytes, sha256:")
        assert not getattr(span, "_attachments", None)

    @needs_attachments
    def test_over_the_size_cap_is_a_placeholder(self, capture, client, stubber):
        """Attachments share the payload's max_payload_chars; what does not fit is named."""
        limit = len(base64.b64encode(PNG)) + 200  # the image fits, the document does not
        bedrock_trace.register(
            client, config=TraceConfig(include_binary=True, max_payload_chars=limit)
        )
        _converse(client, stubber, _image_messages())
        (span,) = capture.spans
        text, image, document = span.inputs["messages"][0]["content"]
        assert text == {"text": PROMPT}
        assert _attachment(span, image["image"]["source"]["bytes"])[1] == PNG
        note = document["document"]["source"]["bytes"]
        assert note.startswith(f"[binary application/pdf, {len(PDF)} bytes, sha256:")
        assert note.endswith("not attached: over max_payload_chars]")
        assert span.attributes["bedrock_trace.truncated"] == ["inputs"]

    def test_capture_content_off_records_no_binary(self, capture, client, stubber):
        """capture_content=False wins: neither attachments nor base64 text."""
        bedrock_trace.register(
            client, config=TraceConfig(include_binary=True, capture_content=False)
        )
        _converse(client, stubber, _image_messages())
        (span,) = capture.spans
        assert not getattr(span, "_attachments", None)
        dumped = json.dumps(span.to_dict())
        assert base64.b64encode(PNG).decode() not in dumped
        assert PROMPT not in dumped

    def test_redact_hook_sees_base64_and_decides(self, capture, client, stubber):
        """The hook gets base64 text; what it returns is recorded as it left it."""
        seen = []

        def drop_images(kind, value):
            text = json.dumps(value)
            seen.append(base64.b64encode(PNG).decode() in text)
            return json.loads(text.replace(base64.b64encode(PNG).decode(), "[image removed]"))

        bedrock_trace.register(client, config=TraceConfig(include_binary=True, redact=drop_images))
        _converse(client, stubber, _image_messages())
        (span,) = capture.spans
        image = span.inputs["messages"][0]["content"][1]["image"]["source"]["bytes"]
        assert image == "[image removed]"
        assert seen[0] is True
        # The hook rebuilt every string (a JSON round trip): what it returned is plain text.
        document = span.inputs["messages"][0]["content"][2]["document"]["source"]["bytes"]
        assert document == base64.b64encode(PDF).decode()
        assert not getattr(span, "_attachments", None)


class TestInvokeModelAttachments:
    """Base64 images inside invoke_model bodies become attachments too."""

    @needs_attachments
    def test_anthropic_base64_image(self, capture, client, http):
        """An Anthropic messages body: the image source's data is an attachment."""
        bedrock_trace.register(client, config=TraceConfig(include_binary=True))
        row = ROWS["anthropic-image"]
        http.add(row.response)
        client.invoke_model(modelId=row.model_id, body=json.dumps(row.request))
        (span,) = capture.spans
        image, text = span.inputs["body"]["messages"][0]["content"]
        assert text == row.request["messages"][0]["content"][1]
        assert image["source"]["media_type"] == "image/png"
        assert _attachment(span, image["source"]["data"]) == ("image/png", MODELS_PNG)

    @needs_attachments
    def test_generated_image_in_the_response(self, capture, client, http):
        """An image model's base64 output is an attachment of the sniffed media type."""
        bedrock_trace.register(client, config=TraceConfig(include_binary=True))
        http.add({"images": [base64.b64encode(PNG).decode()]})
        client.invoke_model(
            modelId="amazon.titan-image-generator-v2:0",
            body=json.dumps({"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "a cat"}}),
        )
        (span,) = capture.spans
        (ref,) = span.outputs["images"]
        assert _attachment(span, ref) == ("image/png", PNG)
