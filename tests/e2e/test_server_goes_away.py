"""The tracking server going away mid-run: the traced program does not notice."""

from __future__ import annotations

import gc
from typing import Any

import mlflow
import pytest
from mlflow.tracing.trace_manager import InMemoryTraceManager

import bedrock_trace
from bedrock_trace.standin import StandIn
from bedrock_trace.testing import flush

from ..conftest import ONE_ATTEMPT, make_session
from .conftest import FULL_MLFLOW, flush_traces, start_mlflow_server

pytestmark = pytest.mark.skipif(
    not FULL_MLFLOW, reason="the MLflow tracking server needs full mlflow (pip install mlflow)"
)

MESSAGES = [{"role": "user", "content": [{"text": "What is MLflow Tracing, in one line?"}]}]
MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


def _calls(client: Any) -> tuple[Any, ...]:
    """What the caller gets, minus what the stand-in varies per request (ids, latencies)."""
    response = client.converse(modelId=MODEL, messages=MESSAGES)
    events = list(client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"])
    streamed = "".join(
        event["contentBlockDelta"]["delta"].get("text", "")
        for event in events
        if "contentBlockDelta" in event
    )
    return (
        response["output"],
        response["stopReason"],
        response["usage"],
        [next(iter(event)) for event in events],
        streamed,
    )


class TestServerGoesAway:
    """A real mlflow server, stopped between calls."""

    def test_calls_before_and_after_the_server_stops(self, tmp_path, monkeypatch):
        """Before and after the stop, traced calls return what untraced calls return."""
        # MLflow retries failed exports with backoff; keep the test about us, not its retries.
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
        server = start_mlflow_server(tmp_path)
        session = make_session()
        untraced_session = make_session()
        bedrock_trace.register(session)
        try:
            mlflow.set_tracking_uri(server.url)
            mlflow.set_experiment("server-goes-away")
            with StandIn() as standin:
                traced = session.client(
                    "bedrock-runtime", endpoint_url=standin.endpoint_url, config=ONE_ATTEMPT
                )
                untraced = untraced_session.client(
                    "bedrock-runtime", endpoint_url=standin.endpoint_url, config=ONE_ATTEMPT
                )
                before = _calls(traced)
                flush_traces()
                stored = mlflow.MlflowClient(server.url).search_traces(
                    locations=[mlflow.get_experiment_by_name("server-goes-away").experiment_id]
                )
                assert len(stored) == 2  # the server had them while it was up

                server.stop()
                after = _calls(traced)
                expected = _calls(untraced)
            assert before == after == expected
            gc.collect()
            flush()
            flush_traces()  # MLflow batches exports: let it try (and fail) to send them
            assert not InMemoryTraceManager.get_instance()._traces, "a trace was left open"
        finally:
            bedrock_trace.unregister(session)
            server.stop()
            mlflow.set_tracking_uri(None)
            monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
            monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
            mlflow.tracing.reset()
