"""register / unregister: which clients are traced, idempotence, and what is left alone."""

from __future__ import annotations

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber

import bedrock_trace
from bedrock_trace.testing import converse_response

from .conftest import MODEL_ID, ONE_ATTEMPT, REGION, make_session

MESSAGES = [{"role": "user", "content": [{"text": "Hi"}]}]


def _converse(client) -> dict:
    with Stubber(client) as stub:
        stub.add_response("converse", converse_response("Hello"))
        response = client.converse(modelId=MODEL_ID, messages=MESSAGES)
        stub.assert_no_pending_responses()
    return response


class TestRegisterTargets:
    """Sessions, clients and the default session as targets."""

    def test_session_covers_clients_created_after(self, capture):
        """A client created from a registered session gets one span per call."""
        session = make_session()
        bedrock_trace.register(session)
        _converse(session.client("bedrock-runtime"))
        (span,) = capture.spans
        assert span.name == "BedrockRuntime.converse"

    def test_client_created_before_register_is_not_covered(self, capture):
        """A session covers only the clients created after register (emitters are copied)."""
        session = make_session()
        earlier = session.client("bedrock-runtime")
        bedrock_trace.register(session)
        _converse(earlier)
        assert capture.spans == []

    def test_client_registration_covers_only_that_client(self, capture):
        """register(client) traces that client and not its siblings."""
        session = make_session()
        traced, other = session.client("bedrock-runtime"), session.client("bedrock-runtime")
        bedrock_trace.register(traced)
        _converse(traced)
        _converse(other)
        (span,) = capture.spans
        assert span.name == "BedrockRuntime.converse"

    def test_botocore_session(self, capture):
        """A botocore session is accepted like a boto3 one."""
        session = botocore.session.Session()
        session.set_credentials("AKIAFAKE", "fake-secret")
        bedrock_trace.register(session)
        _converse(session.create_client("bedrock-runtime", region_name=REGION))
        assert len(capture.spans) == 1

    def test_default_session(self, capture):
        """register(None) covers boto3.client(...) and no other session."""
        # A fresh default session, through boto3's own API (the one boto3.client(...) uses).
        boto3.setup_default_session(
            aws_access_key_id="AKIAFAKE", aws_secret_access_key="fake-secret", region_name=REGION
        )
        bedrock_trace.register()
        try:
            _converse(boto3.client("bedrock-runtime", region_name=REGION))
            _converse(make_session().client("bedrock-runtime"))
        finally:
            bedrock_trace.unregister()
        (span,) = capture.spans
        assert span.name == "BedrockRuntime.converse"

    @pytest.mark.parametrize(
        "target", [object(), "bedrock-runtime", 42, boto3], ids=["object", "str", "int", "module"]
    )
    def test_wrong_target_is_a_type_error_naming_the_type(self, target):
        """Anything but a session, a client or None raises TypeError naming what was given."""
        with pytest.raises(TypeError, match=type(target).__qualname__):
            bedrock_trace.register(target)
        with pytest.raises(TypeError, match=type(target).__qualname__):
            bedrock_trace.unregister(target)

    def test_wrong_config_is_a_type_error(self):
        """config must be a TraceConfig."""
        with pytest.raises(TypeError, match="TraceConfig"):
            bedrock_trace.register(make_session(), config={"include_binary": True})


class TestIdempotence:
    """Registering more than once never makes two spans for one call."""

    def test_register_session_twice(self, capture):
        """Two register calls on a session: one span."""
        session = make_session()
        bedrock_trace.register(session)
        bedrock_trace.register(session)
        _converse(session.client("bedrock-runtime"))
        assert len(capture.spans) == 1

    def test_register_session_and_its_client(self, capture):
        """A client of a registered session registered on its own: one span."""
        session = make_session()
        bedrock_trace.register(session)
        client = session.client("bedrock-runtime")
        bedrock_trace.register(client)
        bedrock_trace.register(client)
        _converse(client)
        assert len(capture.spans) == 1

    def test_register_again_replaces_config(self, capture):
        """The configuration of the latest register call applies."""
        session = make_session()
        bedrock_trace.register(session)
        bedrock_trace.register(session, config=bedrock_trace.TraceConfig(include_binary=True))
        client = session.client("bedrock-runtime")
        image = {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}}
        with Stubber(client) as stub:
            stub.add_response("converse", converse_response())
            client.converse(modelId=MODEL_ID, messages=[{"role": "user", "content": [image]}])
        (span,) = capture.spans
        recorded = span.inputs["messages"][0]["content"][0]["image"]["source"]["bytes"]
        # In full: base64 text, which MLflow may store as a trace attachment and link to.
        assert recorded == "iVBORw==" or recorded.startswith("mlflow-attachment://")


class TestUnregister:
    """unregister stops new spans, for existing clients too."""

    def test_unregister_session_reaches_existing_clients(self, capture):
        """Clients created before unregister(session) stop producing spans."""
        session = make_session()
        bedrock_trace.register(session)
        client = session.client("bedrock-runtime")
        bedrock_trace.unregister(session)
        _converse(client)
        _converse(session.client("bedrock-runtime"))
        assert capture.spans == []

    def test_register_after_unregister_resumes(self, capture):
        """register after unregister traces the session's clients again."""
        session = make_session()
        bedrock_trace.register(session)
        client = session.client("bedrock-runtime")
        bedrock_trace.unregister(session)
        bedrock_trace.register(session)
        _converse(client)
        assert len(capture.spans) == 1

    def test_unregister_one_client_of_a_registered_session(self, capture):
        """unregister(client) stops that client only."""
        session = make_session()
        bedrock_trace.register(session)
        quiet, loud = session.client("bedrock-runtime"), session.client("bedrock-runtime")
        bedrock_trace.unregister(quiet)
        _converse(quiet)
        _converse(loud)
        assert len(capture.spans) == 1

    def test_unregister_is_idempotent(self, capture):
        """unregister twice, or of a target never registered, is harmless."""
        session = make_session()
        bedrock_trace.unregister(session)
        bedrock_trace.register(session)
        bedrock_trace.unregister(session)
        bedrock_trace.unregister(session)
        _converse(session.client("bedrock-runtime"))
        assert capture.spans == []


class TestOtherServices:
    """Other services of a registered session are left alone."""

    def test_s3_client_untouched(self, capture, session):
        """An S3 call in a registered session makes no span and gets its response unchanged."""
        s3 = session.client("s3", config=ONE_ATTEMPT)
        expected = {"Buckets": [{"Name": "b"}], "Owner": {"ID": "1"}}
        with Stubber(s3) as stub:
            stub.add_response("list_buckets", expected)
            assert s3.list_buckets() == expected
        assert capture.spans == []
        assert capture.open_traces() == 0

    def test_stubber_activated_before_register(self, capture):
        """A Stubber that was active before register(client) does not hide the call."""
        client = make_session().client("bedrock-runtime")
        with Stubber(client) as stub:
            bedrock_trace.register(client)
            stub.add_response("converse", converse_response())
            client.converse(modelId=MODEL_ID, messages=MESSAGES)
        assert len(capture.spans) == 1
