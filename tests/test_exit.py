"""Interpreter exit: spans ended while the program exits still reach the tracking server.

Each test runs a small program in a fresh interpreter that traces to a loopback stand-in of an
MLflow tracking server (``mlflow_sink``), abandons streams in some way, and exits at once. What
counts is what the server received: MLflow's own exit handlers (its export queue and the
OpenTelemetry tracer provider) run in that process exactly as they would in production.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from .mlflow_sink import mlflow_sink

PROGRAM = textwrap.dedent(
    """
    import sys, time
    import boto3, mlflow
    from botocore.config import Config
    from mlflow.entities.trace_location import MlflowExperimentLocation
    import bedrock_trace
    from bedrock_trace.testing import HttpStub, converse_response, converse_stream_messages

    url, streams, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    redact_seconds = float(sys.argv[4])
    mlflow.set_tracking_uri(url)
    mlflow.tracing.set_destination(MlflowExperimentLocation("0"))

    def slow_redact(kind, value):
        time.sleep(redact_seconds)
        return value

    config = bedrock_trace.TraceConfig(redact=slow_redact if redact_seconds else None)
    session = boto3.Session(
        aws_access_key_id="AKIAFAKE", aws_secret_access_key="fake", region_name="us-east-1"
    )
    bedrock_trace.register(session, config=config)
    client = session.client("bedrock-runtime", config=Config(retries={"total_max_attempts": 1}))
    held = []
    with HttpStub(client) as http:
        if how.startswith("warm-"):  # a trace exported before, as in a program that has run a while
            how = how[len("warm-"):]
            http.add(converse_response("earlier"))
            client.converse(
                modelId="amazon.nova-lite-v1:0",
                messages=[{"role": "user", "content": [{"text": "Hi"}]}],
            )
            mlflow.flush_trace_async_logging()
        for _ in range(streams):
            http.add_stream(converse_stream_messages("Once upon a time", pieces=4))
            stream = client.converse_stream(
                modelId="amazon.nova-lite-v1:0",
                messages=[{"role": "user", "content": [{"text": "Hi"}]}],
            )["stream"]
            if how == "break":
                for index, _event in enumerate(stream):
                    if index == 1:
                        break
            elif how == "hold":
                held.append(stream)  # still referenced when the interpreter exits
            # "drop": the response is dropped unread
    """
)


def run_and_count(
    streams: int, how: str, redact_seconds: float = 0.0, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run the program against a fresh sink; the number of stream spans it stored, stderr."""
    with mlflow_sink() as sink:
        done = subprocess.run(
            [sys.executable, "-c", PROGRAM, sink.url, str(streams), how, str(redact_seconds)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, **(env or {})},
        )
        assert done.returncode == 0, done.stderr
        return sink.stored("BedrockRuntime.converse_stream"), done.stderr


# Python 3.12 starts no thread once the interpreter shuts down, and MLflow starts its export
# thread at the first export: when no trace at all was exported before the exit, the spans we
# end then (and those the reaper is still ending as the interpreter shuts down) reach MLflow's
# exporter but not the server. Not fixable from here without reaching into MLflow;
# docs/guarantees.md states it, with the remedy tested below (synchronous export).
COLD_EXPORTER_ON_312 = pytest.mark.xfail(
    sys.version_info[:2] == (3, 12),
    reason="Python 3.12: MLflow cannot start its export thread during shutdown",
    strict=False,
)


class TestExit:
    """Streams abandoned right before the program exits: every span is stored."""

    @pytest.mark.parametrize(
        "how",
        [
            pytest.param("break", marks=COLD_EXPORTER_ON_312),
            pytest.param("drop", marks=COLD_EXPORTER_ON_312),
            pytest.param("hold", marks=COLD_EXPORTER_ON_312),
        ],
    )
    def test_streams_abandoned_just_before_exit_are_stored(self, how):
        """30 streams broken off, dropped, or still held at exit: 30 spans stored."""
        stored, stderr = run_and_count(30, how)
        assert stored == 30, stderr

    @pytest.mark.parametrize("how", ["warm-hold", "warm-break"])
    def test_after_an_earlier_trace(self, how):
        """A trace exported earlier, then 30 streams held or broken off at exit: 30 stored."""
        stored, stderr = run_and_count(30, how)
        assert stored == 30, stderr

    @pytest.mark.parametrize("how", ["break", "drop", "hold"])
    def test_synchronous_export_stores_everything(self, how):
        """MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false (the remedy on Python 3.12): 30 stored."""
        stored, stderr = run_and_count(30, how, env={"MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"})
        assert stored == 30, stderr

    @COLD_EXPORTER_ON_312
    def test_slow_redact_hook_at_exit(self):
        """A redact hook taking 0.2 s on the span that ends during exit: still stored."""
        stored, stderr = run_and_count(1, "break", redact_seconds=0.2)
        assert stored == 1, stderr
