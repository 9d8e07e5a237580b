"""The demo's scenarios and its trace printout, against the stand-in, in memory."""

from __future__ import annotations

import importlib.util
import io
import re
from collections.abc import Iterator
from typing import Any

import pytest

import bedrock_trace
from bedrock_trace import demo
from bedrock_trace.standin import StandIn

from .conftest import make_session


def registered_client(service: str) -> Iterator[Any]:
    """A client of a registered session, pointed at a stand-in playing the demo's scenario."""
    with StandIn(scenario=demo.DEMO_SCENARIO) as server:
        session = make_session()
        bedrock_trace.register(session)
        yield session.client(service, endpoint_url=server.endpoint_url)
        bedrock_trace.unregister(session)


@pytest.fixture
def demo_client():
    yield from registered_client("bedrock-runtime")


class TestDemoScenarios:
    """The tutorial's three scenarios make the traces the tutorial shows."""

    def test_scenarios_and_tree(self, capture, demo_client):
        """basic, streaming, agent: three traces; the agent trace has four spans."""
        out = io.StringIO()
        for _title, scenario in demo.SCENARIOS:
            scenario(demo_client, demo.DEFAULT_MODEL, out)
        basic, streamed, agent = capture.traces
        assert [s.name for s in basic.data.spans] == ["BedrockRuntime.converse"]
        assert [s.name for s in streamed.data.spans] == ["BedrockRuntime.converse_stream"]
        assert [s.name for s in agent.data.spans] == [
            "weather_agent",
            "BedrockRuntime.converse",
            "get_weather",
            "BedrockRuntime.converse",
        ]
        assert "Spans open and close" in out.getvalue()
        assert "sunny" in out.getvalue()
        tree = demo.format_trace(agent)
        lines = tree.splitlines()
        assert lines[1].startswith("└─ weather_agent [AGENT]")
        assert lines[2].startswith("   ├─ BedrockRuntime.converse [CHAT_MODEL]")
        assert "tokens" in lines[2]
        assert lines[4].startswith("   └─ BedrockRuntime.converse")


@pytest.fixture
def demo_agents():
    """A bedrock-agent-runtime client of a registered session, pointed at the stand-in."""
    yield from registered_client("bedrock-agent-runtime")


class TestDemoAgentScenario:
    """The fourth scenario: a Bedrock Agent with a knowledge base, its trace as a tree."""

    def test_agent_run_is_one_tree_with_its_steps(self, capture, demo_agents):
        """invoke_agent's own trace: pre-processing, the knowledge-base lookup as RETRIEVER
        documents, the action group as TOOL, each model invocation as LLM with tokens."""
        out = io.StringIO()
        answer = demo.knowledge_agent(demo_agents, out)
        assert "travel portal" in answer
        assert "Lisbon" in answer
        printed = out.getvalue()
        assert f"  agent: {answer}" in printed
        assert "  source: s3://example-handbook/travel-policy.md" in printed
        (trace,) = capture.traces
        root = trace.data.spans[0]
        assert root.name == "BedrockAgentRuntime.invoke_agent"
        assert root.span_type == "AGENT"
        types = [span.span_type for span in trace.data.spans]
        assert {"CHAIN", "LLM", "RETRIEVER", "TOOL"} <= set(types)
        (retriever,) = [span for span in trace.data.spans if span.span_type == "RETRIEVER"]
        documents = retriever.outputs
        assert documents[0]["metadata"]["doc_uri"] == "s3://example-handbook/travel-policy.md"
        assert "travel portal" in documents[0]["page_content"]
        tree = demo.format_trace(trace).splitlines()
        assert tree[1].startswith("└─ BedrockAgentRuntime.invoke_agent [AGENT]")
        assert "tokens" in tree[1]
        assert any("[RETRIEVER]" in line for line in tree)
        assert any("get_weather [TOOL]" in line for line in tree)


class TestDemoCommand:
    """The command line."""

    @pytest.mark.skipif(
        importlib.util.find_spec("sqlalchemy") is not None,
        reason="full mlflow is installed; the e2e suite runs the demo",
    )
    def test_local_store_without_full_mlflow_says_what_to_install(self, capsys):
        """With mlflow-tracing alone, the default local store is refused with advice."""
        assert demo.main(["demo"]) == 2
        assert "pip install mlflow" in capsys.readouterr().err

    def test_usage(self, capsys):
        """No subcommand: usage on stderr, exit 2."""
        assert demo.main([]) == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: bedrock-trace <command>")
        for command in ("demo", "ui", "standin"):
            assert f"\n  {command} " in err

    @pytest.mark.parametrize("command", ["demo", "ui", "standin"])
    def test_help_names_every_option(self, capsys, command):
        """bedrock-trace --help lists every option each command's own --help has."""
        with pytest.raises(SystemExit) as exited:
            demo.main([command, "--help"])
        assert exited.value.code == 0
        options = set(re.findall(r"(--[a-z][a-z-]+)", capsys.readouterr().out)) - {"--help"}
        assert options
        assert demo.main(["--help"]) == 0
        top = capsys.readouterr().out
        assert sorted(option for option in options if option not in top) == []


class TestUiCommand:
    """bedrock-trace ui refuses clearly what it cannot open (starting it: tests/e2e)."""

    def test_missing_store(self, capsys, tmp_path):
        """A store file that does not exist is named, with what to do; nothing is created."""
        store = tmp_path / "nothing-here.db"
        assert demo.main(["ui", "--tracking-uri", f"sqlite:///{store}", "--no-browser"]) == 2
        err = capsys.readouterr().err
        assert str(store) in err
        assert "bedrock-trace demo" in err
        assert not store.exists()

    def test_relative_store_is_resolved_here(self, capsys, tmp_path, monkeypatch):
        """A relative sqlite path is taken from the current folder, and named absolutely."""
        monkeypatch.chdir(tmp_path)
        assert demo.main(["ui", "--no-browser"]) == 2
        assert str(tmp_path / "bedrock-trace-demo.db") in capsys.readouterr().err

    def test_server_that_does_not_answer(self, capsys, closed_port):
        """An http(s) tracking URI is only opened; one that does not answer is an error."""
        url = f"http://127.0.0.1:{closed_port}"
        assert demo.main(["ui", "--tracking-uri", url, "--no-browser"]) == 1
        assert f"{url} does not answer" in capsys.readouterr().err
