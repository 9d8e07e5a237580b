"""aiobotocore and aioboto3: the same spans and guarantees as the sync path.

Runs where aiobotocore is installed (``tox -e async``); the sync suite's environment skips it.
Tests drive real async clients against a loopback HTTP server, each inside ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import gc
import json

import pytest

aiobotocore_session = pytest.importorskip("aiobotocore.session")
aioboto3 = pytest.importorskip("aioboto3")

import mlflow  # noqa: E402
from aiobotocore.config import AioConfig  # noqa: E402
from botocore.eventstream import EventStream  # noqa: E402
from botocore.exceptions import ClientError, EndpointConnectionError, EventStreamError  # noqa: E402
from mlflow.entities import SpanStatusCode, SpanType  # noqa: E402

import bedrock_trace  # noqa: E402
from bedrock_trace.testing import (  # noqa: E402
    chunk_event,
    converse_response,
    converse_stream_messages,
    exception_message,
    flush,
)

from .conftest import ACCESS_KEY, REGION, SECRET_KEY  # noqa: E402
from .loopback import Script, loopback  # noqa: E402

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "Hi"}]}]
CLAUDE_BODY = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "Hi"}],
}
CLAUDE_RESPONSE = {
    "type": "message",
    "role": "assistant",
    "content": [{"type": "text", "text": "Hello!"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 8, "output_tokens": 3},
}
EVENTSTREAM = {"content-type": "application/vnd.amazon.eventstream"}


def json_script(body, status=200, headers=None) -> Script:
    data = json.dumps(body).encode()
    return Script(
        [(0, data)],
        status=status,
        content_length=len(data),
        headers={"content-type": "application/json", **(headers or {})},
    )


def stream_script(messages, pause=0.0) -> Script:
    return Script([(pause, message) for message in messages], headers=EVENTSTREAM)


def settle() -> None:
    gc.collect()
    flush()


@pytest.fixture
def server():
    with loopback() as srv:
        yield srv


@pytest.fixture(params=["aiobotocore", "aioboto3"])
def make_client(request, server):
    """An async bedrock-runtime client factory, from a registered aiobotocore/aioboto3 session."""
    if request.param == "aiobotocore":
        session = aiobotocore_session.get_session()
        session.set_credentials(ACCESS_KEY, SECRET_KEY)
    else:
        session = aioboto3.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        )
    bedrock_trace.register(session)

    create = session.create_client if request.param == "aiobotocore" else session.client

    def make(attempts: int = 1, endpoint_url: str | None = None):
        return create(
            "bedrock-runtime",
            region_name=REGION,
            endpoint_url=endpoint_url or server.url,
            config=AioConfig(retries={"mode": "standard", "total_max_attempts": attempts}),
        )

    yield make
    bedrock_trace.unregister(session)


class TestAsyncCalls:
    """Non-streaming calls through async clients."""

    def test_invoke_model_body_read_by_its_length(self, capture, server, make_client):
        """read(content_length) reads it all: complete, ended at that read, not at collection."""
        server.add(json_script(CLAUDE_RESPONSE))

        async def main():
            async with make_client() as client:
                response = await client.invoke_model(modelId=CLAUDE, body=json.dumps(CLAUDE_BODY))
                body = response["body"]
                length = int(response["ResponseMetadata"]["HTTPHeaders"]["content-length"])
                data = await body.read(length)
                ended_while_held = [span.name for span in capture.spans]
                return data, ended_while_held, body

        data, ended_while_held, _body = asyncio.run(main())
        assert json.loads(data) == CLAUDE_RESPONSE
        assert ended_while_held == ["BedrockRuntime.invoke_model"]
        (span,) = capture.spans
        assert "bedrock_trace.incomplete" not in span.attributes
        assert span.outputs == CLAUDE_RESPONSE

    def test_converse(self, capture, server, make_client):
        """converse: one CHAT_MODEL span with inputs, outputs and usage."""
        server.add(json_script(converse_response("Hello!", input_tokens=7, output_tokens=2)))

        async def main():
            async with make_client() as client:
                return await client.converse(modelId=CLAUDE, messages=MESSAGES)

        response = asyncio.run(main())
        assert response["output"]["message"]["content"] == [{"text": "Hello!"}]
        (span,) = capture.spans
        assert span.name == "BedrockRuntime.converse"
        assert span.span_type == SpanType.CHAT_MODEL
        assert span.inputs == {"modelId": CLAUDE, "messages": MESSAGES}
        assert span.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 9
        assert span.attributes["bedrock_trace.request_id"] == "loopback-request"

    @pytest.mark.parametrize("how", ["read", "chunks", "context"])
    def test_invoke_model_body_read_asynchronously(self, capture, server, make_client, how):
        """invoke_model: the body is recorded as the caller reads it, identical bytes."""
        server.add(
            json_script(
                CLAUDE_RESPONSE,
                headers={
                    "x-amzn-bedrock-input-token-count": "8",
                    "x-amzn-bedrock-output-token-count": "3",
                },
            )
        )

        async def main():
            async with make_client() as client:
                response = await client.invoke_model(modelId=CLAUDE, body=json.dumps(CLAUDE_BODY))
                body = response["body"]
                if how == "read":
                    return await body.read()
                if how == "chunks":
                    return b"".join([chunk async for chunk in body.iter_chunks(5)])
                async with body as raw:
                    return await raw.read()

        data = asyncio.run(main())
        assert json.loads(data) == CLAUDE_RESPONSE
        settle()
        (span,) = capture.spans
        if how == "context":
            # The caller read aiohttp's own response object: the span ends, saying so.
            assert "raw aiohttp response" in span.attributes["bedrock_trace.end_reason"]
            assert span.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 11
            return
        assert span.outputs == CLAUDE_RESPONSE
        assert span.attributes["mlflow.chat.tokenUsage"] == {
            "input_tokens": 8,
            "output_tokens": 3,
            "total_tokens": 11,
        }
        assert span.attributes["mlflow.chat.messages"][-1] == {
            "role": "assistant",
            "content": "Hello!",
        }

    def test_invoke_model_body_never_read(self, capture, server, make_client):
        """A body dropped unread still ends its span, as incomplete."""
        server.add(json_script(CLAUDE_RESPONSE))

        async def main():
            async with make_client() as client:
                await client.invoke_model(modelId=CLAUDE, body=json.dumps(CLAUDE_BODY))

        asyncio.run(main())
        settle()
        (span,) = capture.spans
        assert span.attributes["bedrock_trace.incomplete"] is True
        assert capture.open_traces() == 0

    def test_throttling_with_retries(self, capture, server, make_client):
        """429 twice then 200: one OK span counting two retries."""
        for _ in range(2):
            server.add(
                json_script(
                    {"message": "slow down"},
                    status=429,
                    headers={"x-amzn-errortype": "ThrottlingException:"},
                )
            )
        server.add(json_script(converse_response()))

        async def main():
            async with make_client(attempts=3) as client:
                return await client.converse(modelId=CLAUDE, messages=MESSAGES)

        asyncio.run(main())
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK
        assert span.attributes["bedrock_trace.retry_attempts"] == 2

    def test_http_error(self, capture, server, make_client):
        """A ValidationException: the caller gets it; one ERROR span with the code."""
        server.add(
            json_script(
                {"message": "bad model"},
                status=400,
                headers={"x-amzn-errortype": "ValidationException:"},
            )
        )

        async def main():
            async with make_client() as client:
                await client.converse(modelId="bogus", messages=MESSAGES)

        with pytest.raises(ClientError) as raised:
            asyncio.run(main())
        assert raised.value.response["Error"]["Code"] == "ValidationException"
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.ERROR
        assert span.attributes["bedrock_trace.error_code"] == "ValidationException"

    def test_connection_refused(self, capture, make_client, closed_port):
        """Nothing listening: EndpointConnectionError for the caller, one ERROR span."""

        async def main():
            async with make_client(endpoint_url=f"http://127.0.0.1:{closed_port}") as client:
                await client.converse(modelId=CLAUDE, messages=MESSAGES)

        with pytest.raises(EndpointConnectionError):
            asyncio.run(main())
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.ERROR


class TestAsyncStreams:
    """AioEventStream wrappers end their span exactly once on every path."""

    def test_converse_stream_exhausted(self, capture, server, make_client):
        """async for to the end: the rebuilt output, one span event per stream event."""
        messages = converse_stream_messages("Hello async world")
        server.add(stream_script(messages))

        async def main():
            async with make_client() as client:
                response = await client.converse_stream(modelId=CLAUDE, messages=MESSAGES)
                assert isinstance(response["stream"], EventStream)
                return [event async for event in response["stream"]]

        events = asyncio.run(main())
        assert len(events) == len(messages)
        (span,) = capture.spans
        assert span.outputs["output"]["message"]["content"] == [{"text": "Hello async world"}]
        assert len(span.events) == len(messages)
        assert span.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 15

    def test_invoke_stream_exhausted(self, capture, server, make_client):
        """invoke_model_with_response_stream: chunks rebuilt into the Anthropic message."""
        chunks = [
            {
                "type": "message_start",
                "message": {
                    "role": "assistant",
                    "content": [],
                    "usage": {"input_tokens": 4, "output_tokens": 1},
                },
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi!"},
            },
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 2},
            },
        ]
        server.add(stream_script([chunk_event(chunk) for chunk in chunks]))

        async def main():
            async with make_client() as client:
                response = await client.invoke_model_with_response_stream(
                    modelId=CLAUDE, body=json.dumps(CLAUDE_BODY)
                )
                return [event async for event in response["body"]]

        assert len(asyncio.run(main())) == 3
        (span,) = capture.spans
        assert span.outputs["content"] == [{"type": "text", "text": "Hi!"}]
        assert span.attributes["mlflow.chat.tokenUsage"]["output_tokens"] == 2

    @pytest.mark.parametrize("how", ["break", "close", "drop", "cancel"])
    def test_stream_ended_early(self, capture, server, make_client, how):
        """break, close, dropped unread, task cancelled: one span, incomplete."""
        server.add(
            stream_script(converse_stream_messages("Hello async world", pieces=6), pause=0.05)
        )

        async def read(client):
            response = await client.converse_stream(modelId=CLAUDE, messages=MESSAGES)
            stream = response["stream"]
            if how == "drop":
                return
            async for _event in stream:
                if how == "close":
                    stream.close()
                break

        async def main():
            async with make_client() as client:
                if how == "cancel":
                    reading = asyncio.Event()
                    task = asyncio.create_task(read_all(client, reading))
                    await reading.wait()  # cancelled mid-stream, not while the call is made
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                else:
                    await read(client)

        async def read_all(client, reading):
            response = await client.converse_stream(modelId=CLAUDE, messages=MESSAGES)
            async for _event in response["stream"]:
                reading.set()

        asyncio.run(main())
        settle()
        (span,) = capture.spans
        assert span.attributes["bedrock_trace.incomplete"] is True
        assert span.status.status_code == SpanStatusCode.OK
        assert capture.open_traces() == 0

    def test_exception_event_mid_stream(self, capture, server, make_client):
        """An exception event: EventStreamError for the caller, ERROR span with the code."""
        messages = converse_stream_messages("Hello")[:3]
        messages.append(exception_message("modelStreamErrorException", "model failed"))
        server.add(stream_script(messages))

        async def main():
            async with make_client() as client:
                response = await client.converse_stream(modelId=CLAUDE, messages=MESSAGES)
                async for _event in response["stream"]:
                    pass

        with pytest.raises(EventStreamError):
            asyncio.run(main())
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.ERROR
        assert span.attributes["bedrock_trace.error_code"] == "modelStreamErrorException"


class TestAsyncAgent:
    """The tool-calling agent as async def, and concurrent tasks."""

    def test_async_agent_trace(self, capture, server, make_client):
        """@mlflow.trace async agent: one trace, converse / tool / converse under the agent."""
        server.add(
            json_script(
                converse_response(
                    None,
                    tool_uses=[
                        {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}
                    ],
                )
            )
        )
        server.add(json_script(converse_response("Sunny in Paris.")))

        @mlflow.trace(span_type=SpanType.TOOL)
        async def get_weather(city: str) -> str:
            await asyncio.sleep(0)
            return f"Sunny in {city}"

        @mlflow.trace(span_type=SpanType.AGENT)
        async def agent(question: str) -> str:
            async with make_client() as client:
                messages = [{"role": "user", "content": [{"text": question}]}]
                first = await client.converse(modelId=CLAUDE, messages=messages)
                use = first["output"]["message"]["content"][0]["toolUse"]
                result = await get_weather(**use["input"])
                messages += [
                    first["output"]["message"],
                    {
                        "role": "user",
                        "content": [
                            {
                                "toolResult": {
                                    "toolUseId": use["toolUseId"],
                                    "content": [{"text": result}],
                                }
                            }
                        ],
                    },
                ]
                final = await client.converse(modelId=CLAUDE, messages=messages)
                return final["output"]["message"]["content"][0]["text"]

        assert asyncio.run(agent("Weather?")) == "Sunny in Paris."
        (trace,) = capture.traces
        root, *children = trace.data.spans
        assert root.name == "agent"
        assert [span.name for span in children] == [
            "BedrockRuntime.converse",
            "get_weather",
            "BedrockRuntime.converse",
        ]
        assert all(span.parent_id == root.span_id for span in children)

    def test_concurrent_tasks_keep_their_parents(self, capture, server, make_client):
        """Tasks under distinct parent spans: every call under its own task's parent."""
        for index in range(8):
            server.add(json_script(converse_response(f"r{index}")))

        async def one(client, index):
            with mlflow.start_span(f"task-{index}"):
                await asyncio.sleep(0.01 * (index % 3))
                await client.converse(modelId=CLAUDE, messages=MESSAGES)

        async def main():
            async with make_client() as client:
                await asyncio.gather(*(one(client, index) for index in range(8)))

        asyncio.run(main())
        assert len(capture.traces) == 8
        for trace in capture.traces:
            root, child = trace.data.spans
            assert child.parent_id == root.span_id
            assert child.name == "BedrockRuntime.converse"


class TestAsyncAutolog:
    """autolog() reaches clients aiobotocore and aioboto3 create (the same plugin hook)."""

    @pytest.fixture(autouse=True)
    def _autolog(self, monkeypatch):
        from bedrock_trace import _autolog

        monkeypatch.delenv("BOTOCORE_EXPERIMENTAL__PLUGINS", raising=False)
        bedrock_trace.autolog()
        yield
        bedrock_trace.autolog(disable=True)
        _autolog.state.enabled, _autolog.state.config = None, None

    @pytest.mark.parametrize("library", ["aiobotocore", "aioboto3"])
    def test_client_of_an_unregistered_session(self, capture, server, library):
        """A session nobody registered, as a framework builds it: one span per call."""
        server.add(json_script(converse_response("Hello!")))

        async def main():
            if library == "aiobotocore":
                session = aiobotocore_session.get_session()
                session.set_credentials(ACCESS_KEY, SECRET_KEY)
                create = session.create_client
            else:
                session = aioboto3.Session(
                    aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY
                )
                create = session.client
            async with create("bedrock-runtime", region_name=REGION, endpoint_url=server.url) as c:
                return await c.converse(modelId=CLAUDE, messages=MESSAGES)

        response = asyncio.run(main())
        (span,) = capture.spans
        assert span.name == "BedrockRuntime.converse"
        assert span.outputs["output"] == response["output"]

    def test_final_event_then_close_is_complete(self, capture, server):
        """Read up to metadata, then close: complete, as in the sync path."""
        messages = converse_stream_messages("Hello there", pieces=3)
        server.add(stream_script(messages))

        async def main():
            session = aiobotocore_session.get_session()
            session.set_credentials(ACCESS_KEY, SECRET_KEY)
            async with session.create_client(
                "bedrock-runtime", region_name=REGION, endpoint_url=server.url
            ) as client:
                response = await client.converse_stream(modelId=CLAUDE, messages=MESSAGES)
                stream = response["stream"]
                assert "_raw_stream" in vars(stream)
                iterator = stream.__aiter__()
                for _ in messages:
                    await iterator.__anext__()
                stream.close()

        asyncio.run(main())
        settle()
        (span,) = capture.spans
        assert "bedrock_trace.incomplete" not in span.attributes
        assert span.status.status_code == SpanStatusCode.OK
