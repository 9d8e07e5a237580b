"""Failed calls: one ERROR span per call whatever failed, and the caller's error unchanged."""

from __future__ import annotations

import gc
import json

import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
)
from botocore.stub import Stubber, UnStubbedResponseError
from mlflow.entities import SpanStatusCode

import bedrock_trace
from bedrock_trace.testing import HttpStub, flush

from .conftest import MODEL_ID, REGION, make_session

MESSAGES = [{"role": "user", "content": [{"text": "Hi"}]}]
THROTTLED = {"message": "Too many requests, please wait before trying again."}
THROTTLE_HEADERS = {"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/"}


def _exception_event(span):
    (event,) = [event for event in span.events if event.name == "exception"]
    return event.attributes


class TestHttpErrors:
    """HTTP errors arrive at after-call; the span records them before the client raises."""

    def test_throttling_after_retries_is_one_error_span(self, capture, session):
        """429 three times under standard retries: the caller gets ThrottlingException, one span."""
        client = session.client(
            "bedrock-runtime", config=Config(retries={"mode": "standard", "total_max_attempts": 3})
        )
        with HttpStub(client) as http:
            for attempt in range(3):
                http.add(
                    THROTTLED, status=429, headers=THROTTLE_HEADERS, request_id=f"req-{attempt}"
                )
            with pytest.raises(ClientError) as raised:
                client.converse(modelId=MODEL_ID, messages=MESSAGES)
        assert type(raised.value).__name__ == "ThrottlingException"
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.ERROR
        attrs = span.attributes
        assert attrs["bedrock_trace.error_code"] == "ThrottlingException"
        assert attrs["bedrock_trace.http_status"] == 429
        assert attrs["bedrock_trace.retry_attempts"] == 2
        assert attrs["bedrock_trace.request_id"] == "req-2"
        event = _exception_event(span)
        assert event["exception.type"] == "ThrottlingException"
        assert event["exception.message"] == str(raised.value)

    def test_retry_then_success_is_one_ok_span(self, capture, session):
        """A 429 followed by a 200: one OK span that counts the retry."""
        client = session.client(
            "bedrock-runtime", config=Config(retries={"mode": "standard", "total_max_attempts": 3})
        )
        body = {
            "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
            "metrics": {"latencyMs": 5},
        }
        with HttpStub(client) as http:
            http.add(THROTTLED, status=429, headers=THROTTLE_HEADERS)
            http.add(body)
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.OK
        assert span.attributes["bedrock_trace.retry_attempts"] == 1
        assert span.events == []

    def test_stubbed_client_error(self, capture, client, stubber):
        """A Stubber client error ends the span as ERROR with code, status and message."""
        stubber.add_client_error(
            "converse",
            service_error_code="ValidationException",
            service_message="The provided model identifier is invalid.",
            http_status_code=400,
        )
        with pytest.raises(ClientError) as raised:
            client.converse(modelId="bogus", messages=MESSAGES)
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.ERROR
        assert span.attributes["bedrock_trace.error_code"] == "ValidationException"
        assert span.attributes["bedrock_trace.http_status"] == 400
        assert _exception_event(span)["exception.message"] == str(raised.value)

    def test_unmodeled_error_code_is_recorded_as_client_error(self, capture, client, stubber):
        """An error code botocore has no class for is typed ClientError, like the exception."""
        stubber.add_client_error(
            "converse", service_error_code="SomethingNew", http_status_code=418
        )
        with pytest.raises(ClientError) as raised:
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
        assert type(raised.value) is ClientError
        (span,) = capture.spans
        assert _exception_event(span)["exception.type"] == "ClientError"

    def test_invoke_model_error_leaves_no_body_to_read(self, capture, client, http):
        """An HTTP error on invoke_model ends the span without touching a body."""
        http.add(
            {"message": "Malformed input request"},
            status=400,
            headers={"x-amzn-errortype": "ValidationException:"},
        )
        with pytest.raises(ClientError):
            client.invoke_model(modelId=MODEL_ID, body=json.dumps({"x": 1}))
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.ERROR
        assert span.inputs["body"] == {"x": 1}


class TestTransportErrors:
    """Errors out of the endpoint arrive at after-call-error."""

    def test_connection_refused_is_one_error_span(self, capture, session, closed_port):
        """Nothing listening on the endpoint: EndpointConnectionError unchanged, one ERROR span."""
        client = session.client(
            "bedrock-runtime",
            endpoint_url=f"http://127.0.0.1:{closed_port}",
            config=Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2),
        )
        with pytest.raises(EndpointConnectionError):
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.ERROR
        assert span.attributes["bedrock_trace.retry_attempts"] == 1
        assert _exception_event(span)["exception.type"] == "EndpointConnectionError"

    def test_error_raised_in_send_is_the_callers_own_object(self, capture, client, http):
        """The exception the caller catches is the very object that failed the request."""
        error = EndpointConnectionError(endpoint_url="https://bedrock-runtime.invalid")
        http.add_error(error)
        with pytest.raises(EndpointConnectionError) as raised:
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
        assert raised.value is error
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.ERROR

    def test_missing_credentials(self, capture):
        """No credentials: NoCredentialsError for the caller, one ERROR span."""
        import boto3

        session = boto3.Session(region_name=REGION)
        bedrock_trace.register(session)
        client = session.client("bedrock-runtime")
        with pytest.raises(NoCredentialsError):
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
        (span,) = capture.spans
        assert _exception_event(span)["exception.type"] == "NoCredentialsError"


class TestCallsThatNeverStart:
    """Calls that fail before or around before-call leave nothing open."""

    def test_param_validation_error_opens_no_span(self, capture, client):
        """Invalid parameters fail before before-call: no span, nothing open."""
        with pytest.raises(ParamValidationError):
            client.converse(modelId=MODEL_ID, messages="not a list")
        assert capture.spans == []
        assert capture.open_traces() == 0

    def test_error_from_another_before_call_handler_still_ends_the_span(self, capture, client):
        """Another before-call handler raising after our span opened: the span still ends."""

        class HookFailed(Exception):
            pass

        def failing_hook(**kwargs):
            raise HookFailed("a user's own before-call hook failed")

        client.meta.events.register("before-call.bedrock-runtime.Converse", failing_hook)
        with pytest.raises(HookFailed):
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
        gc.collect()
        flush()
        (span,) = capture.spans
        assert span.status.status_code == SpanStatusCode.ERROR
        assert span.attributes["bedrock_trace.incomplete"] is True
        assert "without a response" in span.attributes["bedrock_trace.end_reason"]
        assert capture.open_traces() == 0

    def test_unstubbed_call_opens_no_span(self, capture, client):
        """A Stubber with nothing queued fails before before-call: no span, nothing open."""
        with Stubber(client), pytest.raises(UnStubbedResponseError):
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
        assert capture.spans == []
        assert capture.open_traces() == 0


class TestSecrets:
    """Credentials and signatures never reach a trace or a log line."""

    def test_no_secret_in_traces_or_logs(self, capture, caplog):
        """Across success, HTTP error and transport error, no secret appears anywhere."""
        from .conftest import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN

        caplog.set_level("DEBUG")
        session = make_session()
        bedrock_trace.register(session)
        client = session.client("bedrock-runtime", config=Config(retries={"total_max_attempts": 1}))
        with HttpStub(client) as http:
            http.add(
                {
                    "output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
                    "stopReason": "end_turn",
                    "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                    "metrics": {},
                }
            )
            http.add(THROTTLED, status=429, headers=THROTTLE_HEADERS)
            http.add_error(EndpointConnectionError(endpoint_url="https://x.invalid"))
            http.add({"body": "ok"})
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
            with pytest.raises(ClientError):
                client.converse(modelId=MODEL_ID, messages=MESSAGES)
            with pytest.raises(EndpointConnectionError):
                client.converse(modelId=MODEL_ID, messages=MESSAGES)
            client.invoke_model(modelId=MODEL_ID, body=b"{}")
            signatures = [
                request.headers["Authorization"].decode().rsplit("Signature=", 1)[1]
                if isinstance(request.headers["Authorization"], bytes)
                else request.headers["Authorization"].rsplit("Signature=", 1)[1]
                for request in http.requests
            ]
        dumped = "\n".join(trace.to_json() for trace in capture.traces)
        assert len(capture.spans) == 4
        # botocore's own DEBUG lines print the canonical request; ours must print nothing secret.
        logs = "\n".join(
            record.getMessage() + str(record.exc_info or "")
            for record in caplog.records
            if record.name.startswith(("bedrock_trace", "mlflow"))
        )
        for secret in (SECRET_KEY, SESSION_TOKEN, *signatures):
            assert secret not in dumped
            assert secret not in logs
        # The access key id is not a secret, but we do not record it either.
        assert ACCESS_KEY not in dumped


class TestGuard:
    """Our own failures are contained: logged, the span still ends, the caller unaffected."""

    def test_mapper_failure_does_not_reach_the_caller(
        self, capture, client, stubber, monkeypatch, caplog
    ):
        """A broken response mapper: the call returns normally, the span ends, one warning."""
        import attrs

        from bedrock_trace import _operations
        from bedrock_trace.testing import converse_response, expect_internal_errors

        def broken(parsed, headers, call):
            raise RuntimeError("mapper bug")

        broken_op = attrs.evolve(_operations.OPERATIONS["Converse"], finish=broken)
        monkeypatch.setitem(_operations.OPERATIONS, "Converse", broken_op)
        expected = converse_response("fine")
        stubber.add_response("converse", expected)
        stubber.add_response("converse", expected)
        with expect_internal_errors() as errors, caplog.at_level("DEBUG", "bedrock_trace"):
            assert client.converse(modelId=MODEL_ID, messages=MESSAGES) == expected
            assert client.converse(modelId=MODEL_ID, messages=MESSAGES) == expected
        assert [where for where, _ in errors] == ["after-call", "after-call"]
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1
        assert "mapper bug" in warnings[0].getMessage()
        assert len(capture.spans) == 2

    def test_strict_mode_surfaces_the_error(self, capture, client, stubber, monkeypatch):
        """In strict mode (the test default) the same failure fails the call."""
        import attrs

        from bedrock_trace import _operations
        from bedrock_trace.testing import converse_response, expect_internal_errors, strict_guard

        def broken(parsed, headers, call):
            raise RuntimeError("mapper bug")

        broken_op = attrs.evolve(_operations.OPERATIONS["Converse"], finish=broken)
        monkeypatch.setitem(_operations.OPERATIONS, "Converse", broken_op)
        stubber.add_response("converse", converse_response())
        with expect_internal_errors(), pytest.raises(AssertionError, match="mapper bug"):  # noqa: SIM117
            with strict_guard(), pytest.raises(RuntimeError, match="mapper bug"):
                client.converse(modelId=MODEL_ID, messages=MESSAGES)
        assert len(capture.spans) == 1
