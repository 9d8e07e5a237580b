"""The stand-in answers embedding models (Titan, Cohere) in their own body format, and the
traced call is an EMBEDDING span with its usage."""

from __future__ import annotations

import json
import math

import pytest
from mlflow.entities import SpanType

import bedrock_trace
from bedrock_trace.standin import StandIn

from .conftest import ONE_ATTEMPT, make_session


@pytest.fixture
def standin_client():
    with StandIn() as server:
        session = make_session()
        bedrock_trace.register(session)
        yield session.client(
            "bedrock-runtime", endpoint_url=server.endpoint_url, config=ONE_ATTEMPT
        )
        bedrock_trace.unregister(session)


def invoke(client, model_id: str, body: dict) -> dict:
    response = client.invoke_model(modelId=model_id, body=json.dumps(body))
    return json.loads(response["body"].read())


class TestStandInEmbeddings:
    """Titan Text Embeddings and Cohere Embed, as LangChain's BedrockEmbeddings calls them."""

    def test_titan_embedding(self, capture, standin_client):
        """{"inputText"} -> {"embedding", "inputTextTokenCount"}: normalised, deterministic."""
        model = "amazon.titan-embed-text-v2:0"
        first = invoke(standin_client, model, {"inputText": "hello world"})
        again = invoke(standin_client, model, {"inputText": "hello world"})
        other = invoke(standin_client, model, {"inputText": "something else"})
        assert set(first) == {"embedding", "inputTextTokenCount"}
        assert len(first["embedding"]) == 1024
        assert math.isclose(math.sqrt(sum(v * v for v in first["embedding"])), 1.0, abs_tol=1e-3)
        assert first == again
        assert first["embedding"] != other["embedding"]
        assert first["inputTextTokenCount"] > 0
        span = capture.spans[0]
        assert span.span_type == SpanType.EMBEDDING
        assert span.outputs["embedding"] == first["embedding"]
        assert span.attributes["mlflow.chat.tokenUsage"]["input_tokens"] > 0

    def test_titan_dimensions_and_normalize(self, standin_client):
        """The request's dimensions and normalize are honoured."""
        body = invoke(
            standin_client,
            "amazon.titan-embed-text-v2:0",
            {"inputText": "hi", "dimensions": 256, "normalize": False},
        )
        assert len(body["embedding"]) == 256
        assert not math.isclose(sum(v * v for v in body["embedding"]), 1.0, abs_tol=1e-3)

    def test_cohere_embeddings(self, capture, standin_client):
        """{"texts"} -> one vector per text, Cohere's response shape."""
        texts = ["first passage", "second passage"]
        body = invoke(
            standin_client,
            "cohere.embed-english-v3",
            {"texts": texts, "input_type": "search_document"},
        )
        assert body["texts"] == texts
        assert body["response_type"] == "embeddings_floats"
        assert [len(vector) for vector in body["embeddings"]] == [1024, 1024]
        assert body["embeddings"][0] != body["embeddings"][1]
        (span,) = capture.spans
        assert span.span_type == SpanType.EMBEDDING
