"""Traces of fixed scenarios against the stand-in, as MLflow stores them, comparable across runs.

``run_case(name)`` runs one scenario of :data:`CASES` through a freshly registered session and
returns what MLflow stores of each trace, span by span (name, parent, status, every attribute's
JSON text in MLflow's order, events, attachments), with only what differs between any two runs
masked: ids, times, measured latencies and stack traces. tests/test_fast_path.py compares the
fast path with MLflow's public API on them; tests/test_stored_traces.py compares them with the
traces stored before the performance work (tests/golden/).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore
import mlflow
import pytest
from botocore.config import Config

import bedrock_trace
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


def mask(text: str) -> str:
    return _VARIABLE.sub("<id>", text)


def _event_attributes(event: Any) -> str:
    attributes = dict(event.attributes)
    if "exception.stacktrace" in attributes:  # file paths and line numbers of this checkout
        attributes["exception.stacktrace"] = "<stacktrace>"
    return mask(json.dumps(attributes, sort_keys=True))


def stored(trace: Any) -> list[dict[str, Any]]:
    """What MLflow stores of a trace's spans, with ids and times masked."""
    spans = trace.data.spans
    index = {span.span_id: i for i, span in enumerate(spans)}
    rows = []
    for span in spans:
        attributes = []
        for key, value in span._span.attributes.items():
            if any(word in key for word in _TIMES):
                value = "<time>"
            attributes.append([key, mask(str(value))])
        rows.append(
            {
                "name": span.name,
                "parent": index.get(span.parent_id),
                "status": [str(span.status.status_code), mask(span.status.description or "")],
                "attributes": attributes,
                "events": [[event.name, _event_attributes(event)] for event in span.events],
                "attachments": sorted(
                    [a.content_type, hashlib.sha256(a.content_bytes).hexdigest()]
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
CASES: dict[str, tuple[Scenario, dict[str, Any], Any]] = {
    "demo": (_demo, {}, DEMO_SCENARIO),
    "invoke": (_invoke, {}, None),
    "images": (_images, {}, None),
    "images, include_binary": (_images, {"include_binary": True}, None),
    "errors": (_errors, {}, _REJECT),
    "payload cap": (_demo, {"max_payload_chars": 40}, DEMO_SCENARIO),
    "no content": (_demo, {"capture_content": False}, DEMO_SCENARIO),
}


def run_case(case: str, span_processors: list[Any] | None = None) -> list[list[dict[str, Any]]]:
    """The stored traces of one case of :data:`CASES`, in the order they ended.

    Args:
        span_processors: passed to ``mlflow.tracing.configure`` for the run.
    """
    scenario, config, rules = CASES[case]
    session = _session()
    with StandIn(scenario=rules) as server:
        bedrock_trace.register(session, config=bedrock_trace.TraceConfig(**config))
        try:
            runtime = session.client(
                "bedrock-runtime", endpoint_url=server.endpoint_url, config=ONE_ATTEMPT
            )
            agents = session.client("bedrock-agent-runtime", endpoint_url=server.endpoint_url)
            with capture_traces() as capture, mlflow.tracing.configure(span_processors):
                scenario(runtime, agents)
                bedrock_trace.testing.flush()
                return [stored(trace) for trace in capture.traces]
        finally:
            bedrock_trace.unregister(session)


GOLDEN = Path(__file__).resolve().parent / "golden"


def versions() -> str:
    """The versions stored traces depend on: MLflow's attributes, botocore's parsing."""
    return f"mlflow-tracing-{mlflow.__version__}_botocore-{botocore.__version__}"


def golden_path(case: str) -> Path:
    return GOLDEN / versions() / (re.sub(r"[^a-z0-9]+", "-", case).strip("-") + ".json")


def main() -> None:
    """Record the traces of every case for the installed versions (run from the checkout)."""
    for case in CASES:
        path = golden_path(case)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run_case(case), indent=1, ensure_ascii=False) + "\n")
        print(path, "from", bedrock_trace.__file__)


if __name__ == "__main__":
    main()
