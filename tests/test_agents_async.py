"""Bedrock Agents runtime through aiobotocore / aioboto3: the same trees as the sync path.

Runs where aiobotocore is installed (``tox -e async``); real async clients read real
event-stream bytes from a loopback HTTP server.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

aiobotocore_session = pytest.importorskip("aiobotocore.session")
aioboto3 = pytest.importorskip("aioboto3")

from aiobotocore.config import AioConfig  # noqa: E402
from botocore.exceptions import EventStreamError  # noqa: E402
from mlflow.entities import SpanStatusCode  # noqa: E402

import bedrock_trace  # noqa: E402
from bedrock_trace.testing import exception_message, flush  # noqa: E402

from . import agent_events as E  # noqa: E402
from .agent_tree import check_full_run  # noqa: E402
from .conftest import ACCESS_KEY, REGION, SECRET_KEY  # noqa: E402
from .loopback import Script, loopback  # noqa: E402

KWARGS = {
    "agentId": E.AGENT_ID,
    "agentAliasId": E.ALIAS_ID,
    "sessionId": E.SESSION_ID,
    "inputText": "Can I return order A-1001?",
    "enableTrace": True,
}


def settle() -> None:
    gc.collect()
    flush()


@pytest.fixture
def server():
    with loopback() as srv:
        yield srv


@pytest.fixture(params=["aiobotocore", "aioboto3"])
def make_client(request, server):
    """An async bedrock-agent-runtime client factory, from a registered session."""
    if request.param == "aiobotocore":
        session = aiobotocore_session.get_session()
        session.set_credentials(ACCESS_KEY, SECRET_KEY)
        create = session.create_client
    else:
        session = aioboto3.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        )
        create = session.client
    bedrock_trace.register(session)

    def make():
        return create(
            "bedrock-agent-runtime",
            region_name=REGION,
            endpoint_url=server.url,
            config=AioConfig(retries={"mode": "standard", "total_max_attempts": 1}),
        )

    yield make
    bedrock_trace.unregister(session)


def agent_script(messages, pause=0.0) -> Script:
    return Script([(pause, message) for message in messages], headers=E.EVENTSTREAM)


class TestAsyncAgentRun:
    """The full agent run gives the sync path's tree."""

    def test_full_run_tree(self, capture, server, make_client):
        server.add(agent_script(E.full_run()))

        async def main():
            async with make_client() as client:
                response = await client.invoke_agent(**KWARGS)
                return [event async for event in response["completion"]]

        assert len(asyncio.run(main())) == len(E.full_run())
        check_full_run(capture.spans)
        (trace,) = capture.traces
        assert trace.info.trace_metadata["mlflow.trace.session"] == E.SESSION_ID


class TestAsyncAgentStreamEnds:
    """Every ending of an async agent stream ends every span once, children inside parents."""

    def _check(self, capture, complete: bool):
        settle()
        assert capture.open_traces() == 0
        spans = capture.spans
        by_id = {s.span_id: s for s in spans}
        for span in spans:
            parent = by_id.get(span.parent_id)
            if parent is not None:
                assert span.end_time_ns <= parent.end_time_ns
        (root,) = [s for s in spans if s.parent_id is None]
        assert root.attributes.get("bedrock_trace.incomplete", False) is not complete
        return root

    @pytest.mark.parametrize("how", ["break", "close", "drop", "cancel"])
    def test_ended_early(self, capture, server, make_client, how):
        """break, close, dropped unread, task cancelled: all spans end, the root incomplete."""
        server.add(agent_script(E.full_run(), pause=0.02))

        reading = asyncio.Event()

        async def read(client, stop_at: int):
            response = await client.invoke_agent(**KWARGS)
            stream = response["completion"]
            if how == "drop":
                return
            index = 0
            async for _event in stream:
                index += 1
                if index == 5:
                    reading.set()
                if index == stop_at:
                    if how == "close":
                        stream.close()
                    break

        async def main():
            async with make_client() as client:
                if how == "cancel":  # while the stream is being read, not during the request
                    task = asyncio.create_task(read(client, 10_000))
                    await reading.wait()
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                else:
                    await read(client, 14)

        asyncio.run(main())
        root = self._check(capture, complete=False)
        assert root.status.status_code == SpanStatusCode.OK
        if how in ("break", "close"):
            (collaborator,) = [s for s in capture.spans if s.name == "refunds"]
            assert collaborator.attributes["bedrock_trace.incomplete"] is True

    def test_error_mid_stream(self, capture, server, make_client):
        """An exception event: EventStreamError for the caller; the root ERROR, children ended."""
        messages = [*E.full_run()[:10], exception_message("throttlingException", "Rate exceeded")]
        server.add(agent_script(messages))

        async def main():
            async with make_client() as client:
                response = await client.invoke_agent(**KWARGS)
                async for _event in response["completion"]:
                    pass

        with pytest.raises(EventStreamError, match="Rate exceeded"):
            asyncio.run(main())
        root = self._check(capture, complete=False)
        assert root.status.status_code == SpanStatusCode.ERROR
        assert len(capture.spans) > 5

    def test_retrieve(self, capture, server, make_client):
        """A non-streaming agent-runtime call: a RETRIEVER span with documents."""
        import json

        body = json.dumps({"retrievalResults": [{**E.REFERENCE, "score": 0.5}]}).encode()
        server.add(
            Script(
                [(0, body)],
                content_length=len(body),
                headers={"content-type": "application/json"},
            )
        )

        async def main():
            async with make_client() as client:
                await client.retrieve(knowledgeBaseId=E.KB_ID, retrievalQuery={"text": "q"})

        asyncio.run(main())
        (span,) = capture.spans
        assert span.outputs[0]["metadata"]["doc_uri"] == "s3://policies/returns.pdf"
