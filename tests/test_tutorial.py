"""Every code block of docs/tutorial runs as written against the stand-in."""

from __future__ import annotations

import pathlib
import re

import pytest

from bedrock_trace.standin import StandIn

# The stand-in's agent runs on this model; each model invocation span is named by it.
AGENT_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
PAGES = sorted((pathlib.Path(__file__).parent.parent / "docs" / "tutorial").glob("[0-9]-*.md"))
# What each page must have traced: the span names of each trace, in order.
EXPECTED = {
    "1-basic.md": [["BedrockRuntime.converse"]],
    "2-streaming.md": [["BedrockRuntime.converse_stream"]],
    "3-agent.md": [
        ["run_agent", "BedrockRuntime.converse", "get_weather", "BedrockRuntime.converse"]
    ],
    "4-disabling.md": [["BedrockRuntime.converse"]],
    "5-bedrock-agent.md": [
        [
            "BedrockAgentRuntime.invoke_agent",
            "preProcessing",
            AGENT_MODEL,
            "orchestration",
            AGENT_MODEL,
            "knowledgeBaseLookup",
            "orchestration",
            AGENT_MODEL,
            "get_weather",
            "orchestration",
            AGENT_MODEL,
        ],
        ["BedrockAgentRuntime.retrieve"],
    ],
}


def code_blocks(page: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


class TestTutorial:
    """The tutorial pages, executed."""

    @pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
    def test_page_runs_and_traces(self, capture, monkeypatch, page, capsys):
        """The page's code runs against the stand-in and makes the traces it describes."""
        (code,) = code_blocks(page)
        with StandIn() as server:
            for name, value in server.environ().items():
                monkeypatch.setenv(name, value)
            exec(compile(code, str(page), "exec"), {"__name__": "__tutorial__"})
        traces = [[span.name for span in trace.data.spans] for trace in capture.traces]
        assert traces == EXPECTED[page.name]
        if page.name != "4-disabling.md":
            assert capsys.readouterr().out.strip()  # the page prints the model's answer
