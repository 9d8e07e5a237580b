"""One early warning when the http(s) tracking server does not answer; never in the way."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import mlflow
import pytest
from mlflow.tracking._tracking_service import utils as tracking_utils

import bedrock_trace
from bedrock_trace import _probe
from bedrock_trace.testing import capture_traces, converse_response

from .conftest import MODEL_ID
from .loopback import Script, loopback

MESSAGES = [{"role": "user", "content": [{"text": "Hello"}]}]
WARNING_START = "bedrock_trace: the MLflow tracking server at"


@pytest.fixture
def tracking_uri() -> Iterator[None]:
    """Put MLflow's tracking URI back after the test."""
    # With mlflow-tracing alone, asking for an unset URI imports a store it does not ship.
    saved = mlflow.get_tracking_uri() if tracking_utils.is_tracking_uri_set() else None
    yield
    mlflow.set_tracking_uri(saved)


def _traced_call(client, stubber, uri: str) -> list:
    """One traced converse call with ``uri`` as the tracking URI (spans kept in memory)."""
    mlflow.set_tracking_uri(uri)
    with capture_traces() as capture:
        stubber.add_response("converse", converse_response("Hi"))
        response = client.converse(modelId=MODEL_ID, messages=MESSAGES)
        _probe.wait()
    assert response["output"]["message"]["content"] == [{"text": "Hi"}]
    return capture.spans


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(WARNING_START)]


class TestTrackingServerCheck:
    """The first traced call per tracking URI checks, in the background, that it answers."""

    def test_closed_port_warns_once(self, client, stubber, closed_port, tracking_uri, caplog):
        """Nothing listening: one WARNING naming the server and what to do; calls unaffected."""
        caplog.set_level(logging.WARNING, logger="bedrock_trace")
        uri = f"http://127.0.0.1:{closed_port}"
        (span,) = _traced_call(client, stubber, uri)
        assert span.name == "BedrockRuntime.converse"
        _traced_call(client, stubber, uri)
        (message,) = _warnings(caplog)
        assert f"http://127.0.0.1:{closed_port} does not answer" in message
        assert "sqlite:///mlflow.db" in message
        assert "mlflow server" in message

    def test_answering_server_is_quiet(self, client, stubber, tracking_uri, caplog):
        """Any HTTP answer, an authentication error too, means the server is there."""
        caplog.set_level(logging.WARNING, logger="bedrock_trace")
        with loopback() as server:
            server.add(Script(pieces=[(0, b"denied")], status=401))
            _traced_call(client, stubber, server.url)
        assert _warnings(caplog) == []

    def test_credentials_never_logged(self, client, stubber, closed_port, tracking_uri, caplog):
        """A URI with user:password in it is not checked, so never logged either."""
        caplog.set_level(logging.DEBUG, logger="bedrock_trace")
        _traced_call(client, stubber, f"http://alice:s3cret@127.0.0.1:{closed_port}")
        assert "s3cret" not in caplog.text
        assert _warnings(caplog) == []

    def test_local_store_and_placeholder_are_not_checked(self, client, stubber, caplog):
        """capture_traces' placeholder URI (never contacted) gives no warning."""
        caplog.set_level(logging.WARNING, logger="bedrock_trace")
        with capture_traces() as capture:
            stubber.add_response("converse", converse_response("Hi"))
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
            _probe.wait()
        assert len(capture.spans) == 1
        assert _warnings(caplog) == []

    def test_unregistered_calls_check_nothing(self, session, closed_port, tracking_uri, caplog):
        """Without a span there is nothing to export, so nothing to check."""
        from botocore.stub import Stubber

        caplog.set_level(logging.WARNING, logger="bedrock_trace")
        bedrock_trace.unregister(session)
        client = session.client("bedrock-runtime")
        with Stubber(client) as stub:
            _traced_call(client, stub, f"http://127.0.0.1:{closed_port}")
        assert _warnings(caplog) == []
