"""autolog(): every Bedrock client created in the process, through botocore's plugin hook."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading

import boto3
import pytest
from botocore.stub import Stubber

import bedrock_trace
from bedrock_trace import _autolog
from bedrock_trace.testing import converse_response

from .conftest import ACCESS_KEY, MODEL_ID, REGION, SECRET_KEY, make_session

MESSAGES = [{"role": "user", "content": [{"text": "Hi"}]}]
ENV = "BOTOCORE_EXPERIMENTAL__PLUGINS"
ENTRY = "bedrock_trace=bedrock_trace.plugin"


@pytest.fixture(autouse=True)
def _autolog_off(monkeypatch: pytest.MonkeyPatch):
    """Each test starts with autolog never called and no plugin variable; and ends so."""
    monkeypatch.delenv(ENV, raising=False)
    _autolog.state.enabled, _autolog.state.config = None, None
    yield
    bedrock_trace.autolog(disable=True)
    _autolog.state.enabled, _autolog.state.config = None, None


def framework_client(service: str = "bedrock-runtime"):
    """A client built the way frameworks build theirs: a new boto3.Session() of their own."""
    return boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    ).client(service)


def converse(client, text: str = "Hello") -> dict:
    with Stubber(client) as stub:
        stub.add_response("converse", converse_response(text))
        response = client.converse(modelId=MODEL_ID, messages=MESSAGES)
        stub.assert_no_pending_responses()
    return response


class TestAutologCoverage:
    """Which clients autolog() traces."""

    def test_client_of_a_session_nobody_registered(self, capture):
        """A client of a framework's own boto3.Session() gets one span per call."""
        bedrock_trace.autolog()
        response = converse(framework_client())
        (span,) = capture.spans
        assert span.name == "BedrockRuntime.converse"
        assert span.outputs["output"] == response["output"]

    def test_boto3_client_shortcut(self, capture, monkeypatch):
        """boto3.client(...) (the default session) is covered too."""
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        bedrock_trace.autolog()
        converse(boto3.client("bedrock-runtime", region_name=REGION))
        (span,) = capture.spans
        assert span.name == "BedrockRuntime.converse"

    def test_client_created_before_autolog_is_not_covered(self, capture):
        """Clients already created keep the handlers they had (none): documented limit."""
        earlier = framework_client()
        bedrock_trace.autolog()
        converse(earlier)
        assert capture.spans == []

    def test_other_services_are_left_alone(self, capture):
        """The Bedrock control plane (LangChain builds one) and others get no span."""
        bedrock_trace.autolog()
        control = framework_client("bedrock")
        with Stubber(control) as stub:
            stub.add_response("list_foundation_models", {"modelSummaries": []})
            control.list_foundation_models()
        assert capture.spans == []

    def test_plugin_covers_every_traced_service(self):
        """The plugin's cheap service list is the handlers' own."""
        from bedrock_trace import _handlers, plugin

        assert set(_handlers.SERVICES) == plugin.SERVICES

    def test_agents_runtime_client(self, capture):
        """A bedrock-agent-runtime client of a framework's session: its retrieve is traced."""
        bedrock_trace.autolog()
        client = framework_client("bedrock-agent-runtime")
        with Stubber(client) as stub:
            stub.add_response("retrieve", {"retrievalResults": []})
            client.retrieve(knowledgeBaseId="KB12345678", retrievalQuery={"text": "hi"})
        (span,) = capture.spans
        assert span.name == "BedrockAgentRuntime.retrieve"

    def test_config_applies_to_autologged_clients(self, capture):
        """autolog(config=...) governs what is recorded."""
        bedrock_trace.autolog(config=bedrock_trace.TraceConfig(capture_content=False))
        converse(framework_client(), text="a secret answer")
        (span,) = capture.spans
        assert "a secret answer" not in str(span.outputs)

    def test_calling_again_with_a_config_replaces_it(self, capture):
        """A second autolog(config=...) reaches clients autolog registered earlier."""
        bedrock_trace.autolog()
        client = framework_client()
        bedrock_trace.autolog(config=bedrock_trace.TraceConfig(capture_content=False))
        converse(client, text="a secret answer")
        (span,) = capture.spans
        assert "a secret answer" not in str(span.outputs)

    def test_calling_again_without_config_keeps_it(self, capture):
        """autolog() twice: idempotent, the earlier config stands."""
        bedrock_trace.autolog(config=bedrock_trace.TraceConfig(capture_content=False))
        bedrock_trace.autolog()
        converse(framework_client(), text="a secret answer")
        (span,) = capture.spans
        assert "a secret answer" not in str(span.outputs)
        assert os.environ[ENV].count(ENTRY) == 1

    def test_rejects_a_config_of_the_wrong_type(self):
        """Like register: a TypeError naming what was given."""
        with pytest.raises(TypeError, match="TraceConfig"):
            bedrock_trace.autolog(config={"capture_content": False})  # type: ignore[arg-type]


class TestAutologWithRegister:
    """autolog() combined with explicit registrations: one span, the explicit config."""

    def test_registered_session_keeps_its_config(self, capture):
        """A client of a registered session: one span, with the session's config."""
        session = make_session()
        bedrock_trace.register(session, config=bedrock_trace.TraceConfig(capture_content=False))
        bedrock_trace.autolog()
        converse(session.client("bedrock-runtime"), text="a secret answer")
        (span,) = capture.spans
        assert "a secret answer" not in str(span.outputs)
        bedrock_trace.unregister(session)

    def test_register_client_of_a_registered_session_after_autolog(self, capture):
        """register(client) wins over the session's handlers the client holds: its config."""
        session = make_session()
        bedrock_trace.register(session, config=bedrock_trace.TraceConfig(capture_content=False))
        bedrock_trace.autolog()
        client = session.client("bedrock-runtime")
        bedrock_trace.register(client)
        converse(client, text="an answer to keep")
        (span,) = capture.spans
        assert "an answer to keep" in str(span.outputs)
        bedrock_trace.unregister(session)

    def test_register_after_autolog_takes_the_client_over(self, capture):
        """register(client, config) on an autologged client: its config, one span."""
        bedrock_trace.autolog()
        client = framework_client()
        bedrock_trace.register(client, config=bedrock_trace.TraceConfig(capture_content=False))
        converse(client, text="a secret answer")
        (span,) = capture.spans
        assert "a secret answer" not in str(span.outputs)

    def test_disable_leaves_explicit_registrations_alone(self, capture):
        """autolog(disable=True) stops autolog's clients, not a client registered by hand."""
        bedrock_trace.autolog()
        mine, theirs = framework_client(), framework_client()
        bedrock_trace.register(mine)
        bedrock_trace.autolog(disable=True)
        converse(mine)
        converse(theirs)
        (only_mine,) = capture.spans
        assert only_mine.name == "BedrockRuntime.converse"

    def test_unregister_of_an_autologged_client_sticks(self, capture):
        """unregister(client) stops it, and a later autolog() does not switch it back on."""
        bedrock_trace.autolog()
        client = framework_client()
        bedrock_trace.unregister(client)
        bedrock_trace.autolog()
        converse(client)
        assert capture.spans == []


class TestAutologDisable:
    """autolog(disable=True) and the environment variable."""

    def test_disable_stops_clients_already_registered(self, capture):
        """No new spans from a client autolog registered; calls still work."""
        bedrock_trace.autolog()
        client = framework_client()
        bedrock_trace.autolog(disable=True)
        assert converse(client)["output"]["message"]["content"] == [{"text": "Hello"}]
        assert capture.spans == []

    def test_disable_stops_registering_new_clients(self, capture):
        """Clients created after disable are not traced, and the entry is gone."""
        bedrock_trace.autolog()
        bedrock_trace.autolog(disable=True)
        assert ENV not in os.environ
        converse(framework_client())
        assert capture.spans == []

    def test_enable_again_resumes(self, capture):
        """autolog() after disable traces the clients it registered before, again."""
        bedrock_trace.autolog()
        client = framework_client()
        bedrock_trace.autolog(disable=True)
        bedrock_trace.autolog()
        converse(client)
        assert len(capture.spans) == 1

    def test_other_plugins_are_kept(self, monkeypatch):
        """Other entries of the variable survive enable and disable, in order."""
        monkeypatch.setenv(ENV, "first=pkg.first, second=pkg.second")
        bedrock_trace.autolog()
        assert os.environ[ENV] == f"first=pkg.first,second=pkg.second,{ENTRY}"
        bedrock_trace.autolog(disable=True)
        assert os.environ[ENV] == "first=pkg.first,second=pkg.second"

    def test_disabled_variable_is_respected(self, capture, monkeypatch, caplog):
        """DISABLED: botocore loads no plugin; autolog says so and changes nothing."""
        monkeypatch.setenv(ENV, "DISABLED")
        with caplog.at_level(logging.WARNING, logger="bedrock_trace"):
            bedrock_trace.autolog()
        assert os.environ[ENV] == "DISABLED"
        assert "DISABLED" in caplog.text
        converse(framework_client())
        assert capture.spans == []

    def test_missing_hook_is_a_clear_error(self, monkeypatch):
        """A botocore without the client-plugin hook: RuntimeError naming the minimum."""
        monkeypatch.setitem(sys.modules, "botocore.plugin", None)  # import raises ImportError
        with pytest.raises(RuntimeError, match=r"botocore >= 1\.39\.9"):
            bedrock_trace.autolog()
        assert ENV not in os.environ


class TestAutologConcurrency:
    """Clients created and called while autolog is switched on and off in another thread."""

    def test_toggling_while_clients_are_created(self, capture):
        """Every call gets at most one span, each span ends; the callers never see an error."""
        errors: list[BaseException] = []
        stop = threading.Event()
        calls = 0

        def caller() -> None:
            nonlocal calls
            try:
                while not stop.is_set():
                    converse(framework_client())
                    calls += 1
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=caller) for _ in range(3)]
        for thread in threads:
            thread.start()
        for _ in range(60):
            bedrock_trace.autolog()
            bedrock_trace.autolog(disable=True)
        bedrock_trace.autolog()
        for _ in range(20):
            converse(framework_client())
        stop.set()
        for thread in threads:
            thread.join()
        assert errors == []
        assert 20 <= len(capture.spans) <= calls + 20
        assert {span.name for span in capture.spans} == {"BedrockRuntime.converse"}


APP = textwrap.dedent(
    """
    import boto3, sys
    from botocore.stub import Stubber
    from bedrock_trace import _autolog
    from bedrock_trace.testing import capture_traces, converse_response

    with capture_traces() as capture:
        client = boto3.Session(region_name="us-east-1").client("bedrock-runtime")
        with Stubber(client) as stub:
            stub.add_response("converse", converse_response("Hello"))
            client.converse(modelId="m", messages=[{"role": "user", "content": [{"text": "Hi"}]}])
    assert _autolog.state.enabled is None, "autolog() was never called"
    print([span.name for span in capture.spans])
    """
)


class TestZeroCode:
    """The environment variable alone, in a fresh interpreter."""

    def _run(self, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if k != ENV}
        base.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        return subprocess.run(
            [sys.executable, "-c", APP],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def test_variable_alone_traces_a_program(self):
        """BOTOCORE_EXPERIMENTAL__PLUGINS=bedrock_trace=bedrock_trace.plugin: one span."""
        done = self._run({ENV: ENTRY})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "['BedrockRuntime.converse']"

    def test_without_the_variable_nothing_is_traced(self):
        """The control: the same program without the variable records nothing."""
        done = self._run({})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]"

    def test_bad_config_variable_is_reported_not_hidden(self):
        """A BEDROCK_TRACE_* value it cannot read: a WARNING (botocore would hide it)."""
        done = self._run({ENV: ENTRY, "BEDROCK_TRACE_CAPTURE_CONTENT": "perhaps"})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]"
        assert "BEDROCK_TRACE_CAPTURE_CONTENT" in done.stderr
