"""invoke_model across model families: one row per family and body shape.

Each row follows the family's page of the Amazon Bedrock user guide, "Inference request
parameters and response fields for foundation models" (docs.aws.amazon.com/bedrock/latest/
userguide/<page>), named in the row's comment.
"""

from __future__ import annotations

import base64
import json

import attrs
import pytest
from mlflow.entities import SpanType

from bedrock_trace.testing import chunk_event

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
PNG_B64 = base64.b64encode(PNG).decode()
PNG_NOTE = f"[binary image/png, {len(PNG)} bytes, sha256:"
IMAGE_GENERATION = "IMAGE_GENERATION"


@attrs.frozen
class Row:
    """One family and shape: request and response bodies, and what the span must show."""

    model_id: str
    request: dict
    response: dict
    span_type: str
    usage: dict | None
    messages: list | None
    headers: dict = attrs.field(factory=dict)
    stream: list | None = None  # chunks, for invoke_model_with_response_stream


def usage(inp: int, out: int, **cache: int) -> dict:
    result = {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}
    if cache:
        result.update(cache)
        result["input_tokens"] = inp + sum(cache.values())
        result["total_tokens"] = result["input_tokens"] + out
    return result


ROWS = {
    # model-parameters-anthropic-claude-messages.html: system, tool use, tool result
    "anthropic-messages-tools": Row(
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 300,
            "system": "Be brief.",
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "tu1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "tu1", "content": "Sunny, 21C"}
                    ],
                },
            ],
        },
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [{"type": "text", "text": "Sunny, 21C in Paris."}],
            "stop_reason": "end_turn",
            "usage": {
                "input_tokens": 50,
                "output_tokens": 9,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 0,
            },
        },
        SpanType.CHAT_MODEL,
        usage(50, 9, cache_read_input_tokens=100, cache_creation_input_tokens=0),
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "tu1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "content": "Sunny, 21C", "tool_call_id": "tu1"},
            {"role": "assistant", "content": "Sunny, 21C in Paris."},
        ],
    ),
    # model-parameters-anthropic-claude-messages.html: an image content block (base64)
    "anthropic-image": Row(
        "anthropic.claude-3-haiku-20240307-v1:0",
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 100,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": PNG_B64,
                            },
                        },
                        {"type": "text", "text": "What is this?"},
                    ],
                }
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "A test pattern."}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1500, "output_tokens": 5},
        },
        SpanType.CHAT_MODEL,
        usage(1500, 5),
        [
            {"role": "user", "content": "[image]\nWhat is this?"},
            {"role": "assistant", "content": "A test pattern."},
        ],
    ),
    # model-parameters-anthropic-claude-text-completion.html (legacy)
    "anthropic-text-completion": Row(
        "anthropic.claude-v2:1",
        {"prompt": "\n\nHuman: Hi\n\nAssistant:", "max_tokens_to_sample": 50},
        {"completion": " Hello!", "stop_reason": "stop_sequence"},
        SpanType.LLM,
        usage(4, 2),
        [
            {"role": "user", "content": "\n\nHuman: Hi\n\nAssistant:"},
            {"role": "assistant", "content": " Hello!"},
        ],
        headers={"x-amzn-bedrock-input-token-count": "4", "x-amzn-bedrock-output-token-count": "2"},
    ),
    # model-parameters-nova.html (messages-v1, image bytes as base64)
    "nova-messages-image": Row(
        "us.amazon.nova-pro-v1:0",
        {
            "schemaVersion": "messages-v1",
            "system": [{"text": "Describe images."}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"image": {"format": "png", "source": {"bytes": PNG_B64}}},
                        {"text": "What is it?"},
                    ],
                }
            ],
            "inferenceConfig": {"maxTokens": 50},
        },
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "A pattern."}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 900, "outputTokens": 3, "totalTokens": 903},
        },
        SpanType.CHAT_MODEL,
        usage(900, 3),
        [
            {"role": "system", "content": "Describe images."},
            {"role": "user", "content": "[image]\nWhat is it?"},
            {"role": "assistant", "content": "A pattern."},
        ],
    ),
    # model-parameters-titan-text.html
    "titan-text": Row(
        "amazon.titan-text-premier-v1:0",
        {"inputText": "Say hi", "textGenerationConfig": {"maxTokenCount": 20}},
        {
            "inputTextTokenCount": 3,
            "results": [{"tokenCount": 2, "outputText": "Hi!", "completionReason": "FINISH"}],
        },
        SpanType.LLM,
        usage(3, 2),
        [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"}],
    ),
    # model-parameters-titan-embed-text.html (single text)
    "titan-embed-text": Row(
        "amazon.titan-embed-text-v2:0",
        {"inputText": "hello", "dimensions": 256, "normalize": True},
        {"embedding": [0.1, -0.2], "inputTextTokenCount": 2},
        SpanType.EMBEDDING,
        usage(2, 0),
        None,
    ),
    # model-parameters-titan-embed-mm.html (multimodal: image as base64)
    "titan-embed-image": Row(
        "amazon.titan-embed-image-v1",
        {"inputText": "a pattern", "inputImage": PNG_B64},
        {"embedding": [0.3], "inputTextTokenCount": 3},
        SpanType.EMBEDDING,
        usage(3, 0),
        None,
    ),
    # model-parameters-embed.html (Cohere Embed, a batch of texts; counts in headers)
    "cohere-embed-batch": Row(
        "cohere.embed-multilingual-v3",
        {"texts": ["one", "two", "three"], "input_type": "search_document"},
        {
            "embeddings": [[0.1], [0.2], [0.3]],
            "id": "e1",
            "response_type": "embeddings_floats",
            "texts": ["one", "two", "three"],
        },
        SpanType.EMBEDDING,
        usage(6, 0),
        None,
        headers={"x-amzn-bedrock-input-token-count": "6", "x-amzn-bedrock-output-token-count": "0"},
    ),
    # model-parameters-meta.html
    "llama": Row(
        "us.meta.llama3-2-3b-instruct-v1:0",
        {"prompt": "<|begin_of_text|>Hi", "max_gen_len": 32, "temperature": 0.5},
        {
            "generation": "Hello there",
            "prompt_token_count": 6,
            "generation_token_count": 3,
            "stop_reason": "stop",
        },
        SpanType.LLM,
        usage(6, 3),
        [
            {"role": "user", "content": "<|begin_of_text|>Hi"},
            {"role": "assistant", "content": "Hello there"},
        ],
    ),
    # model-parameters-mistral-text-completion.html
    "mistral-text": Row(
        "mistral.mixtral-8x7b-instruct-v0:1",
        {"prompt": "<s>[INST] Hi [/INST]", "max_tokens": 20},
        {"outputs": [{"text": "Bonjour", "stop_reason": "stop"}]},
        SpanType.LLM,
        usage(7, 2),
        [
            {"role": "user", "content": "<s>[INST] Hi [/INST]"},
            {"role": "assistant", "content": "Bonjour"},
        ],
        headers={"x-amzn-bedrock-input-token-count": "7", "x-amzn-bedrock-output-token-count": "2"},
    ),
    # model-parameters-mistral-chat-completion.html (Mistral Large 2407)
    "mistral-chat": Row(
        "mistral.mistral-large-2407-v1:0",
        {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20},
        {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Salut"},
                    "stop_reason": "stop",
                }
            ]
        },
        SpanType.CHAT_MODEL,
        usage(5, 2),
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Salut"}],
        headers={"x-amzn-bedrock-input-token-count": "5", "x-amzn-bedrock-output-token-count": "2"},
    ),
    # model-parameters-cohere-command-r-plus.html
    "cohere-command-r": Row(
        "cohere.command-r-plus-v1:0",
        {
            "message": "And in Rome?",
            "preamble": "You are terse.",
            "chat_history": [
                {"role": "USER", "message": "Weather in Paris?"},
                {"role": "CHATBOT", "message": "Sunny."},
            ],
        },
        {"response_id": "r1", "text": "Rainy.", "generation_id": "g1", "finish_reason": "COMPLETE"},
        SpanType.CHAT_MODEL,
        usage(30, 2),
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "And in Rome?"},
            {"role": "assistant", "content": "Rainy."},
        ],
        headers={
            "x-amzn-bedrock-input-token-count": "30",
            "x-amzn-bedrock-output-token-count": "2",
        },
    ),
    # model-parameters-jamba.html
    "ai21-jamba": Row(
        "ai21.jamba-1-5-large-v1:0",
        {
            "messages": [
                {"role": "system", "content": "Be nice."},
                {"role": "user", "content": "Hi"},
            ],
            "max_tokens": 20,
        },
        {
            "id": "j1",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello!"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        },
        SpanType.CHAT_MODEL,
        usage(12, 3),
        [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
        ],
    ),
    # model-parameters-deepseek.html (R1, text completion)
    "deepseek-r1": Row(
        "us.deepseek.r1-v1:0",
        {"prompt": "<|User|>2+2?<|Assistant|>", "max_tokens": 100},
        {"choices": [{"text": "<think>easy</think>4", "stop_reason": "stop"}]},
        SpanType.LLM,
        usage(8, 6),
        [
            {"role": "user", "content": "<|User|>2+2?<|Assistant|>"},
            {"role": "assistant", "content": "<think>easy</think>4"},
        ],
        headers={"x-amzn-bedrock-input-token-count": "8", "x-amzn-bedrock-output-token-count": "6"},
    ),
    # model-parameters-openai.html (gpt-oss, chat completions with a tool call)
    "openai-gpt-oss": Row(
        "openai.gpt-oss-120b-1:0",
        {
            "messages": [{"role": "user", "content": "Weather in Oslo?"}],
            "max_completion_tokens": 50,
            "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        },
        {
            "id": "c1",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
        },
        SpanType.CHAT_MODEL,
        usage(20, 10),
        [
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
        ],
    ),
    # model-parameters-diffusion-stable-ultra-text-image-request-response.html
    "stability-image": Row(
        "stability.stable-image-ultra-v1:0",
        {"prompt": "A car made of vegetables", "aspect_ratio": "1:1"},
        {"seeds": [2130420379], "finish_reasons": [None], "images": [PNG_B64]},
        IMAGE_GENERATION,
        None,
        None,
    ),
    # model-parameters-titan-image.html (Titan Image Generator; Nova Canvas takes the same)
    "titan-image": Row(
        "amazon.titan-image-generator-v2:0",
        {
            "taskType": "TEXT_IMAGE",
            "textToImageParams": {"text": "a lighthouse"},
            "imageGenerationConfig": {"numberOfImages": 1, "height": 512, "width": 512},
        },
        {"images": [PNG_B64], "error": None},
        IMAGE_GENERATION,
        None,
        None,
    ),
    # model-parameters-nova-canvas.html
    "nova-canvas": Row(
        "amazon.nova-canvas-v1:0",
        {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "a lighthouse"}},
        {"images": [PNG_B64]},
        IMAGE_GENERATION,
        None,
        None,
    ),
    # A family this version does not know: recorded decoded, nothing guessed.
    "unknown-family": Row(
        "newvendor.model-x-v1:0",
        {"input": "Hi"},
        {"result": "Hello"},
        SpanType.LLM,
        None,
        None,
    ),
    # Streaming: Anthropic messages events (model-parameters-anthropic-claude-messages.html)
    "anthropic-stream": Row(
        "anthropic.claude-3-haiku-20240307-v1:0",
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "Hi"}],
        },
        {
            "type": "message",
            "role": "assistant",
            "id": "m1",
            "content": [{"type": "text", "text": "Hello!"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 8, "output_tokens": 3},
        },
        SpanType.CHAT_MODEL,
        usage(8, 3),
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        stream=[
            {
                "type": "message_start",
                "message": {
                    "id": "m1",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "usage": {"input_tokens": 8, "output_tokens": 1},
                },
            },
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hello!"},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 3},
            },
            {"type": "message_stop"},
        ],
    ),
    # Streaming: OpenAI-style chunks (model-parameters-openai.html), usage from the
    # invocation metrics of the last chunk.
    "openai-stream": Row(
        "openai.gpt-oss-20b-1:0",
        {"messages": [{"role": "user", "content": "Hi"}]},
        {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hey"},
                    "finish_reason": "stop",
                }
            ]
        },
        SpanType.CHAT_MODEL,
        usage(9, 2),
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}],
        stream=[
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "He"}}]},
            {
                "choices": [{"index": 0, "delta": {"content": "y"}, "finish_reason": "stop"}],
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": 9,
                    "outputTokenCount": 2,
                    "invocationLatency": 80,
                    "firstByteLatency": 30,
                },
            },
        ],
    ),
}


def _placeholders(body):
    """The body with each base64 image replaced by the placeholder prefix, for comparing."""
    text = json.dumps(body).replace(PNG_B64, "IMAGE")
    return json.loads(text)


def _masked(recorded):
    text = json.dumps(recorded)
    start = text.find(PNG_NOTE)
    while start != -1:
        end = text.index("]", start) + 1
        text = text[:start] + "IMAGE" + text[end:]
        start = text.find(PNG_NOTE)
    return json.loads(text)


class TestModelFamilies:
    """Span type, token usage, Chat view messages and readable bodies for every family."""

    @pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
    def test_family(self, capture, client, http, row):
        """The row's request and response give its span type, usage and chat messages."""
        if row.stream is None:
            http.add(row.response, headers=row.headers)
            response = client.invoke_model(modelId=row.model_id, body=json.dumps(row.request))
            assert json.loads(response["body"].read()) == row.response
        else:
            http.add_stream([chunk_event(chunk) for chunk in row.stream], headers=row.headers)
            stream = client.invoke_model_with_response_stream(
                modelId=row.model_id, body=json.dumps(row.request)
            )["body"]
            assert [json.loads(e["chunk"]["bytes"]) for e in stream] == row.stream
        (span,) = capture.spans
        assert span.span_type == row.span_type
        assert span.attributes.get("mlflow.chat.tokenUsage") == row.usage
        assert span.attributes.get("mlflow.chat.messages") == row.messages
        assert _masked(span.inputs["body"]) == _placeholders(row.request)
        expected_outputs = _placeholders(row.response)
        if row.stream is not None:
            assert {k: v for k, v in span.outputs.items() if k in expected_outputs} == (
                expected_outputs
            )
        else:
            assert _masked(span.outputs) == expected_outputs
        assert PNG_B64 not in json.dumps(span.to_dict())

    def test_binary_in_full_when_asked(self, capture, client, http):
        """With include_binary, base64 images in bodies are kept in full: an attachment where
        MLflow has them (see test_attachments.py), else the base64 text as it came."""
        import bedrock_trace
        from bedrock_trace._attachments import SUPPORTED

        bedrock_trace.register(client, config=bedrock_trace.TraceConfig(include_binary=True))
        row = ROWS["stability-image"]
        http.add(row.response)
        client.invoke_model(modelId=row.model_id, body=json.dumps(row.request))
        (span,) = capture.spans
        (image,) = span.outputs["images"]
        if SUPPORTED:
            assert image.startswith("mlflow-attachment://")
            assert f"size={len(PNG)}" in image
        else:
            assert image == PNG_B64

    def test_placeholder_names_media_type_size_and_digest(self, capture, client, http):
        """The placeholder says what the content was: sniffed media type, size, digest."""
        import hashlib

        row = ROWS["titan-image"]
        http.add(row.response)
        client.invoke_model(modelId=row.model_id, body=json.dumps(row.request))
        (span,) = capture.spans
        digest = hashlib.sha256(PNG).hexdigest()[:16]
        assert span.outputs["images"] == [f"{PNG_NOTE}{digest}]"]
