"""The fast path into MLflow stores exactly what MLflow's public span API stores.

Every scenario runs twice against the stand-in, once through MLflow's public API
(``BEDROCK_TRACE_MLFLOW_FAST_PATH=0``) and once through the fast path, and the traces are
compared span by span: name, parent, type, status, every attribute's stored JSON text in the
order MLflow keeps them, every event, every attachment. Only what differs between any two runs
is masked: ids, times, and the stand-in's fresh request ids.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable
from typing import Any

import boto3
import mlflow
import pytest
from botocore.config import Config

import bedrock_trace
from bedrock_trace import _fast_path
from bedrock_trace.demo import (
    DEFAULT_MODEL as DEMO_MODEL,
)
from bedrock_trace.demo import (
    DEMO_AGENT_ALIAS,
    DEMO_AGENT_ID,
    DEMO_SCENARIO,
    SCENARIOS,
    knowledge_agent,
)
from bedrock_trace.standin import StandIn
from bedrock_trace.testing import capture_traces

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
ONE_ATTEMPT = Config(retries={"total_max_attempts": 1, "mode": "standard"})

# What differs between two runs of the same calls, whatever the path.
_VARIABLE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # request ids
    r"|(?<![0-9a-f])[0-9a-f]{12,}(?![0-9a-f])"  # trace, span, tool use and session ids
    r'|[A-Za-z]*[Ll]atency[A-Za-z]*[\\"]*: ?\d+'  # measured (in outputs and in event JSON)
    r"|mlflow-attachment://[^\"\\s]*"  # attachment references hold the trace id
)
_TIMES = ("time_to_first_token", "latency", "eventTime", "duration", "TimeNs")


def _mask(text: str) -> str:
    return _VARIABLE.sub("<id>", text)


def _stored(trace: Any) -> list[dict[str, Any]]:
    """What MLflow stores of a trace's spans, with ids and times masked."""
    spans = trace.data.spans
    index = {span.span_id: i for i, span in enumerate(spans)}
    rows = []
    for span in spans:
        attributes = []
        for key, value in span._span.attributes.items():
            if any(word in key for word in _TIMES):
                value = "<time>"
            attributes.append((key, _mask(str(value))))
        rows.append(
            {
                "name": span.name,
                "parent": index.get(span.parent_id),
                "status": (span.status.status_code, span.status.description),
                "attributes": attributes,
                "events": [
                    (event.name, _mask(json.dumps(event.attributes, sort_keys=True)))
                    for event in span.events
                ],
                "attachments": sorted(
                    (a.content_type, a.content_bytes)
                    for a in getattr(span, "_attachments", {}).values()
                ),
            }
        )
    return rows


def _session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="AKIAFAKE", aws_secret_access_key="fake", region_name="us-east-1"
    )


def _demo(runtime: Any, agents: Any) -> None:
    for _title, scenario in SCENARIOS:
        scenario(runtime, DEMO_MODEL, io.StringIO())
    knowledge_agent(agents, io.StringIO(), agent_id=DEMO_AGENT_ID, alias_id=DEMO_AGENT_ALIAS)


def _invoke(runtime: Any, agents: Any) -> None:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Bonjour, ça va? 日本語 \u2028 emoji 🚀"}],
    }
    runtime.invoke_model(modelId=CLAUDE, body=json.dumps(body))["body"].read()
    for _ in runtime.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(body))[
        "body"
    ]:
        pass


def _images(runtime: Any, agents: Any) -> None:
    """Content MLflow's attachment extraction acts on: binary blocks and a data URI."""
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    runtime.converse(
        modelId=DEMO_MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"text": "What is in this picture?"},
                    {"image": {"format": "png", "source": {"bytes": PNG}}},
                ],
            }
        ],
    )
    runtime.converse(
        modelId=DEMO_MODEL, messages=[{"role": "user", "content": [{"text": data_uri}]}]
    )
    image = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [{"type": "image", "source": image}]}],
    }
    runtime.invoke_model(modelId=CLAUDE, body=json.dumps(body))["body"].read()


def _errors(runtime: Any, agents: Any) -> None:
    """An HTTP error, a stream broken off, odd numbers in the request."""
    with pytest.raises(runtime.exceptions.ValidationException):
        runtime.converse(
            modelId=DEMO_MODEL, messages=[{"role": "user", "content": [{"text": "x"}]}]
        )
    response = runtime.converse_stream(
        modelId=DEMO_MODEL,
        messages=[{"role": "user", "content": [{"text": "x" * 50}]}],
        inferenceConfig={"temperature": 0.1 + 0.2, "topP": 1e-7, "maxTokens": 2**31 - 1},
    )
    for _event in response["stream"]:
        break
    response["stream"].close()


Scenario = Callable[[Any, Any], None]
_REJECT = [{"operation": "converse", "error": {"code": "ValidationException", "message": "No."}}]
SCENARIO_CASES: dict[str, tuple[Scenario, dict[str, Any], Any]] = {
    "demo": (_demo, {}, DEMO_SCENARIO),
    "invoke": (_invoke, {}, None),
    "images": (_images, {}, None),
    "images, include_binary": (_images, {"include_binary": True}, None),
    "errors": (_errors, {}, _REJECT),
    "payload cap": (_demo, {"max_payload_chars": 40}, DEMO_SCENARIO),
    "no content": (_demo, {"capture_content": False}, DEMO_SCENARIO),
}


def _run(monkeypatch: pytest.MonkeyPatch, fast: bool, case: str) -> list[list[dict[str, Any]]]:
    scenario, config, rules = SCENARIO_CASES[case]
    with StandIn(scenario=rules) as server:
        return _traces(monkeypatch, server, fast, scenario, config)


def _traces(
    monkeypatch: pytest.MonkeyPatch,
    server: StandIn,
    fast: bool,
    scenario: Scenario,
    config: dict[str, Any],
) -> list[list[dict[str, Any]]]:
    monkeypatch.setenv(_fast_path.ENV_SWITCH, "1" if fast else "0")
    _fast_path.reset()
    assert (_fast_path.path() is not None) is fast
    session = _session()
    bedrock_trace.register(session, config=bedrock_trace.TraceConfig(**config))
    try:
        runtime = session.client(
            "bedrock-runtime", endpoint_url=server.endpoint_url, config=ONE_ATTEMPT
        )
        agents = session.client("bedrock-agent-runtime", endpoint_url=server.endpoint_url)
        with capture_traces() as capture:
            scenario(runtime, agents)
            bedrock_trace.testing.flush()
            return [_stored(trace) for trace in capture.traces]
    finally:
        bedrock_trace.unregister(session)
        monkeypatch.delenv(_fast_path.ENV_SWITCH)
        _fast_path.reset()


@pytest.mark.parametrize("case", list(SCENARIO_CASES))
def test_the_fast_path_stores_what_the_public_api_stores(monkeypatch, case):
    public = _run(monkeypatch, False, case)
    fast = _run(monkeypatch, True, case)
    assert public, "the scenario made no trace"
    assert sum(len(trace) for trace in public) >= 1
    assert fast == public


def test_the_fast_path_is_used_on_every_supported_mlflow_tracing():
    """Both ends of the supported range (CI runs the oldest and the newest) take it."""
    _fast_path.reset()
    assert _fast_path.path() is not None, mlflow.__version__


def test_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv(_fast_path.ENV_SWITCH, "0")
    _fast_path.reset()
    try:
        assert _fast_path.path() is None
    finally:
        monkeypatch.delenv(_fast_path.ENV_SWITCH)
        _fast_path.reset()
