"""The demo's scenarios and its trace printout, against the stand-in, in memory."""

from __future__ import annotations

import importlib.util
import io

import pytest

import bedrock_trace
from bedrock_trace import demo
from bedrock_trace.standin import StandIn

from .conftest import make_session


@pytest.fixture
def demo_client():
    with StandIn(scenario=demo.DEMO_SCENARIO) as server:
        session = make_session()
        bedrock_trace.register(session)
        yield session.client("bedrock-runtime", endpoint_url=server.endpoint_url)
        bedrock_trace.unregister(session)


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


class TestDemoCommand:
    """The command line."""

    @pytest.mark.skipif(
        importlib.util.find_spec("sqlalchemy") is not None,
        reason="full mlflow is installed; the e2e suite runs the demo",
    )
    def test_local_store_without_full_mlflow_says_what_to_install(self, capsys):
        """With mlflow-tracing alone, the default local store is refused with advice."""
        assert demo.main(["demo"]) == 2
        assert "bedrock-trace[demo]" in capsys.readouterr().err

    def test_usage(self, capsys):
        """No subcommand: usage on stderr, exit 2."""
        assert demo.main([]) == 2
        assert "bedrock-trace demo" in capsys.readouterr().err
