"""Hypothesis strategies for stream event sequences and consumers."""

from __future__ import annotations

import base64
import json

from hypothesis import strategies as st

from bedrock_trace.testing import chunk_event, event_message, exception_message

_KEYS = [
    "text",
    "toolUse",
    "input",
    "reasoningContent",
    "signature",
    "citation",
    "toolResult",
    "image",
    "source",
    "toolUseId",
    "name",
    "inputTokens",
    "outputTokens",
    "latencyMs",
    "type",
    "index",
    "delta",
    "usage",
    "message",
    "content",
    "stop_reason",
    "generation",
    "choices",
    "outputs",
    "amazon-bedrock-invocationMetrics",
    "inputTokenCount",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(_KEYS), children, max_size=3)
    ),
    max_leaves=10,
)

# Payloads that are mostly well-formed, with arbitrary values where the model allows them.
_converse_payloads = {
    "messageStart": st.fixed_dictionaries({"role": st.sampled_from(["assistant", "user"])}),
    "contentBlockStart": st.fixed_dictionaries(
        {
            "contentBlockIndex": st.integers(0, 3),
            "start": st.fixed_dictionaries(
                {
                    "toolUse": st.fixed_dictionaries(
                        {
                            "toolUseId": st.text(min_size=1, max_size=5),
                            "name": st.text(min_size=1, max_size=5),
                        }
                    )
                }
            ),
        }
    ),
    "contentBlockDelta": st.fixed_dictionaries(
        {
            "contentBlockIndex": st.integers(0, 3),
            "delta": st.one_of(
                st.fixed_dictionaries({"text": st.text(max_size=10)}),
                st.fixed_dictionaries(
                    {"toolUse": st.fixed_dictionaries({"input": st.text(max_size=10)})}
                ),
                st.fixed_dictionaries(
                    {
                        "reasoningContent": st.one_of(
                            st.fixed_dictionaries({"text": st.text(max_size=10)}),
                            st.fixed_dictionaries({"signature": st.text(max_size=10)}),
                        )
                    }
                ),
            ),
        }
    ),
    "contentBlockStop": st.fixed_dictionaries({"contentBlockIndex": st.integers(0, 3)}),
    "messageStop": st.fixed_dictionaries(
        {"stopReason": st.sampled_from(["end_turn", "tool_use", "max_tokens"])}
    ),
    "metadata": st.fixed_dictionaries(
        {
            "usage": st.fixed_dictionaries(
                {
                    "inputTokens": st.integers(0, 1000),
                    "outputTokens": st.integers(0, 1000),
                    "totalTokens": st.integers(0, 2000),
                }
            ),
            "metrics": st.fixed_dictionaries({"latencyMs": st.integers(0, 10**5)}),
        }
    ),
}


@st.composite
def converse_messages(draw) -> list[bytes]:
    """An arbitrary ConverseStream: any order of events, maybe ending in an exception."""
    names = draw(st.lists(st.sampled_from(sorted(_converse_payloads)), max_size=12))
    messages = [event_message(name, draw(_converse_payloads[name])) for name in names]
    if draw(st.booleans()) and draw(st.booleans()):
        code = draw(
            st.sampled_from(
                ["throttlingException", "modelStreamErrorException", "validationException"]
            )
        )
        messages.append(exception_message(code, "boom"))
    return messages


@st.composite
def invoke_chunks(draw) -> list[bytes]:
    """An arbitrary InvokeModelWithResponseStream: JSON or raw bytes in each chunk."""
    chunks = draw(
        st.lists(
            st.one_of(
                st.dictionaries(st.sampled_from(_KEYS), json_values, max_size=4),
                st.binary(max_size=20),
                json_values.map(lambda value: json.dumps(value).encode()),
            ),
            max_size=10,
        )
    )
    messages = [chunk_event(chunk) for chunk in chunks]
    if draw(st.booleans()) and draw(st.booleans()):
        messages.append(exception_message("modelStreamErrorException", "boom"))
    return messages


# How the caller consumes the stream: read all, or stop at event k by break / close / drop.
consumers = st.one_of(
    st.just(("exhaust", 0)),
    st.tuples(st.sampled_from(["break", "close", "drop", "hold"]), st.integers(0, 6)),
)

invoke_model_ids = st.sampled_from(
    [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "us.amazon.nova-lite-v1:0",
        "meta.llama3-8b-instruct-v1:0",
        "amazon.titan-text-express-v1",
        "mistral.mistral-large-2407-v1:0",
        "cohere.command-r-v1:0",
        "ai21.jamba-1-5-mini-v1:0",
        "openai.gpt-oss-20b-1:0",
        "deepseek.r1-v1:0",
        "vendor.unknown-model-v1",
    ]
)


# --- Bedrock Agents streams ----------------------------------------------------------------

_ARNS = [f"arn:aws:bedrock:us-east-1:123456789012:agent-alias/A{i}/AL{i}" for i in range(3)]
_TIMES = [None, "2020-01-01T12:00:00.000000Z", "2099-01-01T12:00:00.000000Z"]
_trace_ids = st.sampled_from(["r-0", "r-1", "r-pre-0", "r-guardrail-pre-0"])
_texts = st.text(max_size=12)


def _invocation_input(trace_id: str, kind: str, arn: str) -> dict:
    member = {
        "action": {"actionGroupInvocationInput": {"actionGroupName": "g", "function": "f"}},
        "kb": {"knowledgeBaseLookupInput": {"knowledgeBaseId": "KB", "text": "q"}},
        "code": {"codeInterpreterInvocationInput": {"code": "1"}},
        "collaborator": {
            "agentCollaboratorInvocationInput": {
                "agentCollaboratorName": "c",
                "agentCollaboratorAliasArn": arn,
                "input": {"type": "TEXT", "text": "t"},
            }
        },
    }[kind]
    return {"traceId": trace_id, **member}


def _observation(trace_id: str, kind: str, arn: str) -> dict:
    member = {
        "action": {"actionGroupInvocationOutput": {"text": "r"}},
        "kb": {
            "knowledgeBaseLookupOutput": {
                "retrievedReferences": [
                    {
                        "content": {"text": "p"},
                        "location": {"type": "S3", "s3Location": {"uri": "s3://b/k"}},
                    }
                ]
            }
        },
        "code": {"codeInterpreterInvocationOutput": {"executionOutput": "1"}},
        "collaborator": {
            "agentCollaboratorInvocationOutput": {
                "agentCollaboratorName": "c",
                "agentCollaboratorAliasArn": arn,
                "output": {"type": "TEXT", "text": "t"},
            }
        },
        "final": {"finalResponse": {"text": "done"}},
    }[kind]
    return {"traceId": trace_id, **member}


@st.composite
def _agent_trace_part(draw) -> dict:
    trace_id = draw(_trace_ids)
    arn = draw(st.sampled_from(_ARNS))
    kind = draw(st.sampled_from(["action", "kb", "code", "collaborator"]))
    member_name, member = draw(
        st.sampled_from(
            [
                (
                    "modelInvocationInput",
                    {"traceId": trace_id, "text": "p", "foundationModel": "m.x"},
                ),
                (
                    "modelInvocationOutput",
                    {
                        "traceId": trace_id,
                        "rawResponse": {"content": "r"},
                        "metadata": {"usage": {"inputTokens": 3, "outputTokens": 1}},
                    },
                ),
                ("rationale", {"traceId": trace_id, "text": "why"}),
                ("invocationInput", _invocation_input(trace_id, kind, arn)),
                ("observation", _observation(trace_id, kind, arn)),
                ("observation", _observation(trace_id, "final", arn)),
            ]
        )
    )
    part = draw(st.sampled_from(["orchestrationTrace", "routingClassifierTrace"]))
    if member_name in ("modelInvocationInput", "modelInvocationOutput") and draw(st.booleans()):
        part = draw(st.sampled_from(["preProcessingTrace", "postProcessingTrace"]))
    trace: dict = {part: {member_name: member}}
    other = draw(st.integers(0, 5))
    if other == 0:
        trace = {"guardrailTrace": {"traceId": trace_id, "action": "INTERVENED"}}
    elif other == 1:
        trace = {"failureTrace": {"traceId": trace_id, "failureReason": "f", "failureCode": 500}}
    depth = draw(st.integers(0, 3))
    event: dict = {"sessionId": "s-1", "trace": trace}
    if depth:
        event["callerChain"] = [{"agentAliasArn": a} for a in _ARNS[:depth]]
    if (moment := draw(st.sampled_from(_TIMES))) is not None:
        event["eventTime"] = moment
    return event


@st.composite
def agent_messages(draw) -> list[bytes]:
    """An arbitrary InvokeAgent stream: trace parts in any order, chunks, maybe an exception."""
    messages = []
    for _ in range(draw(st.integers(0, 14))):
        if draw(st.integers(0, 3)) == 0:
            text = draw(_texts).encode()
            messages.append(event_message("chunk", {"bytes": base64.b64encode(text).decode()}))
        else:
            messages.append(event_message("trace", draw(_agent_trace_part())))
    if draw(st.booleans()) and draw(st.booleans()):
        messages.append(exception_message("throttlingException", "boom"))
    return messages
