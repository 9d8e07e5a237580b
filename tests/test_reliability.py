"""Reliability: MLflow failing under us, many threads at once, hostile input."""

from __future__ import annotations

import gc
import json
import os
import threading

import mlflow
import pytest
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bedrock_trace
from bedrock_trace._reaper import reaper
from bedrock_trace.testing import (
    HttpStub,
    capture_traces,
    chunk_event,
    converse_response,
    converse_stream_messages,
    expect_internal_errors,
    flush,
    invoke_model_response,
)

from .conftest import MODEL_ID, ONE_ATTEMPT, make_session
from .faults import FAULTS, FaultyTracerProvider

MESSAGES = [{"role": "user", "content": [{"text": "Hi"}]}]
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def _untraced_and_traced():
    session = make_session()
    untraced = session.client("bedrock-runtime", config=ONE_ATTEMPT)
    bedrock_trace.register(session)
    return untraced, session.client("bedrock-runtime", config=ONE_ATTEMPT)


class TestMlflowFailures:
    """Each MLflow call we make raising: the caller's calls and streams behave as untraced."""

    @pytest.mark.parametrize("fault", FAULTS)
    def test_every_operation_behaves_as_untraced(self, fault):
        """converse, invoke_model and both streams give the untraced results under the fault."""
        untraced, traced = _untraced_and_traced()
        results = []
        provider = FaultyTracerProvider(fault)
        with capture_traces(provider) as capture, expect_internal_errors():
            for client in (untraced, traced):
                with HttpStub(client) as http:
                    http.add(converse_response("plain"))
                    http.add(
                        {"generation": "hi", "prompt_token_count": 1, "generation_token_count": 1}
                    )
                    http.add_stream(converse_stream_messages("streamed"))
                    http.add_stream([chunk_event({"generation": "x"})])
                    converse = client.converse(modelId=MODEL_ID, messages=MESSAGES)
                    converse.pop("ResponseMetadata")
                    body = client.invoke_model(
                        modelId="meta.llama3-8b-instruct-v1:0", body=b'{"prompt": "hi"}'
                    )["body"].read()
                    events = list(
                        client.converse_stream(modelId=MODEL_ID, messages=MESSAGES)["stream"]
                    )
                    chunks = list(
                        client.invoke_model_with_response_stream(
                            modelId="meta.llama3-8b-instruct-v1:0", body=b"{}"
                        )["body"]
                    )
                    results.append((converse, body, events, chunks))
            gc.collect()
            flush()
            assert capture.open_traces() == 0
        assert results[0] == results[1]
        assert provider.fired > 0, "the fault was never injected"


class TestConcurrency:
    """Many threads, distinct parents, streams abandoned midway: no cross-talk, nothing open."""

    def test_threads_with_streams(self, capture, session):
        """8 threads x 25 calls (converse, streams read whole or abandoned): right parents."""
        errors: list[BaseException] = []
        rounds = 25

        def work(index: int) -> None:
            try:
                client = session.client("bedrock-runtime", config=ONE_ATTEMPT)
                with HttpStub(client) as http:
                    for step in range(rounds):
                        with mlflow.start_span(f"worker-{index}-{step}") as parent:
                            if step % 3 == 0:
                                http.add(converse_response(f"w{index}"))
                                client.converse(modelId=MODEL_ID, messages=MESSAGES)
                            else:
                                http.add_stream(converse_stream_messages(f"w{index}", pieces=4))
                                stream = client.converse_stream(
                                    modelId=MODEL_ID, messages=MESSAGES
                                )["stream"]
                                for seen, _event in enumerate(stream):
                                    if step % 3 == 2 and seen == 2:
                                        break  # abandoned midway
                            assert parent.span_id
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        gc.collect()
        flush()
        assert errors == []
        assert len(capture.traces) == 8 * rounds
        for trace in capture.traces:
            root, *children = trace.data.spans
            assert len(children) == 1
            (child,) = children
            assert child.parent_id == root.span_id
            worker = root.name.split("-")[1]
            text = json.dumps(child.outputs)
            assert f"w{worker}" in text
        assert capture.open_traces() == 0


class TestHostileInput:
    """Arbitrary bodies and parameters: never an error of ours, span ended, bounded size."""

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        request=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
        response=st.binary(max_size=300),
        model_id=st.sampled_from(
            [
                CLAUDE,
                "amazon.nova-lite-v1:0",
                "vendor.x",
                "stability.y",
                "arn:aws:bedrock:us-east-1::foundation-model/meta.llama3",
            ]
        ),
    )
    def test_arbitrary_invoke_model_bodies(self, client, request, response, model_id):
        """Binary, invalid UTF-8, non-JSON request and response bodies: a span, no error.

        Recorded inputs and outputs stay within a small cap (plus the truncation marker).
        """
        limit = 200
        bedrock_trace.register(client, config=bedrock_trace.TraceConfig(max_payload_chars=limit))
        with capture_traces() as capture, Stubber(client) as stub:
            stub.add_response("invoke_model", invoke_model_response(response))
            body = client.invoke_model(modelId=model_id, body=request)["body"].read()
            assert body == response
            (span,) = capture.spans
            assert span.status.status_code == "OK"
            for payload in (span.inputs, span.outputs):
                assert len(json.dumps(payload, ensure_ascii=False)) <= limit + 100

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(depth=st.integers(50, 3000))
    def test_deeply_nested_bodies(self, client, depth):
        """A body nested thousands deep is recorded (cut at a depth marker) without error."""
        # Written out, not json.dumps'd: the encoder's own recursion limit differs between
        # Pythons (3.12 stops well before 900 levels), and it is not what is under test.
        text = '{"a": [' * depth + '"leaf"' + "]}" * depth
        with capture_traces() as capture, Stubber(client) as stub:
            stub.add_response("invoke_model", invoke_model_response(text))
            client.invoke_model(modelId=CLAUDE, body=text.encode())
            (span,) = capture.spans
            assert span.status.status_code == "OK"

    def test_huge_payload_is_bounded(self, capture, client, stubber):
        """A 5 MB prompt is cut to max_payload_chars; the call itself is untouched."""
        bedrock_trace.register(client, config=bedrock_trace.TraceConfig(max_payload_chars=10_000))
        stubber.add_response("converse", converse_response())
        huge = [{"role": "user", "content": [{"text": "y" * 5_000_000}]}]
        client.converse(modelId=MODEL_ID, messages=huge)
        (span,) = capture.spans
        assert len(json.dumps(span.inputs)) < 11_000
        assert span.attributes["bedrock_trace.truncated"] == ["inputs"]


class TestTrackingServerUnavailable:
    """The tracking server down or hanging: calls and streams behave as untraced, unblocked."""

    def test_server_down_and_hanging(self, closed_port, monkeypatch):
        """Traces export to a closed port, then to a server that hangs: callers unaffected.

        The hanging server answers nothing until the traced calls have returned, so a call
        that waited for its trace's export would see an answer first: none may.
        """
        from mlflow.entities.trace_location import MlflowExperimentLocation

        from .mlflow_sink import mlflow_sink

        # Failed exports are not retried, and time out long after the server would answer.
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
        # MLflow exports on the caller's thread unless its export is asynchronous: the default
        # of recent mlflow-tracing releases, not of older ones (3.10) for an http:// server.
        # The promise holds where MLflow exports asynchronously; say so explicitly.
        monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "true")

        untraced, traced = _untraced_and_traced()
        hang = threading.Event()
        with mlflow_sink(stall=hang) as hanging:
            for uri in (f"http://127.0.0.1:{closed_port}", hanging.url):
                mlflow.set_tracking_uri(uri)
                mlflow.tracing.set_destination(MlflowExperimentLocation("0"))
                try:
                    results = []
                    for client in (untraced, traced):
                        with HttpStub(client) as http:
                            http.add(converse_response("plain"))
                            http.add_stream(converse_stream_messages("streamed"))
                            converse = client.converse(modelId=MODEL_ID, messages=MESSAGES)
                            converse.pop("ResponseMetadata")
                            events = list(
                                client.converse_stream(modelId=MODEL_ID, messages=MESSAGES)[
                                    "stream"
                                ]
                            )
                            results.append((converse, events))
                    answered_while_calling = hanging.answered
                    assert results[0] == results[1]
                    if uri == hanging.url:
                        assert answered_while_calling == 0
                        hang.set()
                        mlflow.flush_trace_async_logging()
                        assert hanging.received > 0, "no trace was exported at all"
                finally:
                    mlflow.tracing.reset()
                    mlflow.set_tracking_uri(None)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
class TestFork:
    """A forked child gets its own reaper thread at its first traced call."""

    def test_the_child_starts_its_own_reaper(self, capture, client, stubber):
        bedrock_trace.register(client)
        stubber.add_response("converse", converse_response("parent"))
        client.converse(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "a"}]}])
        parent_thread = reaper._thread
        assert parent_thread is not None
        assert parent_thread.is_alive()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then leave without running the parent's exit code
            status = 1
            try:
                threads_before = reaper._thread is not None and reaper._thread.is_alive()
                stubber.add_response("converse", converse_response("child"))
                client.converse(
                    modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "b"}]}]
                )
                started = reaper._thread is not None and reaper._thread.is_alive()
                os.write(write, json.dumps([threads_before, started, reaper._pid]).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read) as pipe:
            threads_before, started, child_reaper_pid = json.loads(pipe.read())
        assert os.waitstatus_to_exitcode(status) == 0
        assert not threads_before  # threads do not survive fork
        assert started
        assert child_reaper_pid == pid
        assert reaper._thread is parent_thread
        assert reaper._pid == os.getpid()
