"""A local stand-in for Amazon Bedrock Runtime: real wire protocol, scripted answers.

:class:`StandIn` is an HTTP server on 127.0.0.1 that answers botocore's REST-JSON requests for
Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream, ApplyGuardrail and
CountTokens the way Bedrock does: the same routes, headers, JSON bodies, AWS event-stream
framing for streams, and errors that botocore turns into its modeled exceptions. Nothing
contacts AWS and any credentials work. What it answers is scripted by a :class:`Scenario`, a
list of :class:`Rule` objects (or plain dicts / JSON) matched in order; without a matching
rule it echoes the user's last message, and it plays the model's part in a tool-calling agent
(it calls a tool the question names, then answers from the tool's result).

The same server answers the Agents for Amazon Bedrock Runtime (``bedrock-agent-runtime``):
InvokeAgent and InvokeInlineAgent (a scripted agent whose ``trace`` events look like the
service's: pre-processing, model invocations with usage, knowledge-base lookups, action groups,
a collaborator, a guardrail, a failure, returnControl), Retrieve, RetrieveAndGenerate(Stream),
Rerank and InvokeFlow.

Example::

    import boto3
    from bedrock_trace.standin import StandIn

    scenario = [
        {"operation": "converse", "throttle": 2, "times": 1},
        {"operation": "converse_stream", "stream_error": {"after": 3}},
    ]
    with StandIn(scenario) as server:
        client = boto3.Session(
            aws_access_key_id="AKIAFAKE", aws_secret_access_key="fake", region_name="us-east-1"
        ).client("bedrock-runtime", endpoint_url=server.endpoint_url)
        client.converse(modelId="amazon.nova-lite-v1:0", messages=[...])  # 429, 429, then 200
        server.requests[-1].body["messages"]

From a shell: ``python -m bedrock_trace.standin --port 8765 --scenario scenario.json``, then
``export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:8765``.  See ``docs/standin.md``.
"""

from __future__ import annotations

from bedrock_trace.standin._cli import main
from bedrock_trace.standin._routes import AGENT_OPERATIONS, OPERATIONS
from bedrock_trace.standin._scenario import (
    AGENT_STEPS,
    DEFAULT_AGENT_STEPS,
    Drop,
    RecordedRequest,
    Reply,
    Rule,
    Scenario,
    ScenarioLike,
    ServiceError,
    Slow,
    StreamError,
    ToolUse,
)
from bedrock_trace.standin._server import StandIn

__all__ = [
    "AGENT_OPERATIONS",
    "AGENT_STEPS",
    "DEFAULT_AGENT_STEPS",
    "OPERATIONS",
    "Drop",
    "RecordedRequest",
    "Reply",
    "Rule",
    "Scenario",
    "ScenarioLike",
    "ServiceError",
    "Slow",
    "StandIn",
    "StreamError",
    "ToolUse",
    "main",
]
