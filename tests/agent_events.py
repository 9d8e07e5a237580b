"""Realistic Bedrock Agents runtime stream events, as the service sends them on the wire.

Field names follow botocore's ``bedrock-agent-runtime`` service model (``ResponseStream``,
``TracePart``, ``FlowResponseStream``, ``RetrieveAndGenerateStreamResponseOutput``) and the
InvokeAgent / trace-events pages of the Bedrock API reference; ``test_agents.py`` checks every
key of every sample against that model.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from typing import Any

import botocore.session

from bedrock_trace.testing import event_message

#: Whether the installed botocore's model has ``FlowTrace.nodeDependencyTrace`` (an agent's
#: trace inside a flow node). An older botocore (the oldest supported one among them) drops
#: that member when it parses a flow trace event, so there is nothing of it to trace.
NODE_DEPENDENCY_TRACE = "nodeDependencyTrace" in (
    botocore.session.get_session()
    .get_service_model("bedrock-agent-runtime")
    .shape_for("FlowTrace")
    .members
)

AGENT_ID = "AGENT12345"
ALIAS_ID = "ALIAS12345"
SESSION_ID = "session-4f855da00427"
SUPERVISOR_ARN = f"arn:aws:bedrock:us-east-1:123456789012:agent-alias/{AGENT_ID}/{ALIAS_ID}"
COLLABORATOR_ARN = "arn:aws:bedrock:us-east-1:123456789012:agent-alias/COLLAB1234/CALIAS1234"
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
KB_ID = "KBID123456"
RUN = "7e3b1f0a-5c2d-4e8f-9a6b-1c2d3e4f5a6b"
EVENTSTREAM = {
    "content-type": "application/vnd.amazon.eventstream",
    "x-amzn-bedrock-agent-content-type": "application/json",
    "x-amz-bedrock-agent-session-id": SESSION_ID,
}
REFERENCE = {
    "content": {"type": "TEXT", "text": "Returns are accepted within 30 days of delivery."},
    "location": {"type": "S3", "s3Location": {"uri": "s3://policies/returns.pdf"}},
    "metadata": {
        "x-amz-bedrock-kb-source-uri": "s3://policies/returns.pdf",
        "x-amz-bedrock-kb-chunk-id": "1%3A0%3Aabc123",
    },
}
REFERENCE_2 = {
    "content": {"type": "TEXT", "text": "Refunds go to the original payment method."},
    "location": {"type": "WEB", "webLocation": {"url": "https://example.com/refunds"}},
    "metadata": {"x-amz-bedrock-kb-chunk-id": "1%3A0%3Adef456"},
}
BASE_TIME = datetime.datetime(2020, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def at(ms: int, base: datetime.datetime = BASE_TIME) -> str:
    """An ``eventTime`` on the wire: ISO 8601 with microseconds, ``ms`` after ``base``."""
    moment = base + datetime.timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def usage(inputs: int, outputs: int) -> dict[str, Any]:
    return {"usage": {"inputTokens": inputs, "outputTokens": outputs}}


def _trace(
    part: str,
    member: str | None,
    body: Mapping[str, Any],
    *,
    ms: int,
    chain: tuple[str, ...] = (SUPERVISOR_ARN,),
    collaborator: str | None = None,
    base: datetime.datetime = BASE_TIME,
) -> bytes:
    """A ``trace`` event carrying one member of one trace part."""
    event: dict[str, Any] = {
        "agentId": AGENT_ID,
        "agentAliasId": ALIAS_ID,
        "agentVersion": "1",
        "sessionId": SESSION_ID,
        "eventTime": at(ms, base),
        "callerChain": [{"agentAliasArn": arn} for arn in chain],
        "trace": {part: {member: dict(body)} if member else dict(body)},
    }
    if collaborator:
        event["collaboratorName"] = collaborator
    return event_message("trace", event)


def chunk(text: str, citations: list[Any] | None = None) -> bytes:
    payload: dict[str, Any] = {"bytes": base64.b64encode(text.encode()).decode("ascii")}
    if citations:
        payload["attribution"] = {"citations": citations}
    return event_message("chunk", payload)


def model_input(trace_id: str, prompt: str, prompt_type: str = "ORCHESTRATION") -> dict[str, Any]:
    return {
        "traceId": trace_id,
        "text": prompt,
        "type": prompt_type,
        "foundationModel": MODEL,
        "inferenceConfiguration": {
            "maximumLength": 2048,
            "stopSequences": ["</invoke>", "</answer>"],
            "temperature": 0.0,
            "topK": 250,
            "topP": 1.0,
        },
        "promptCreationMode": "DEFAULT",
        "parserMode": "DEFAULT",
    }


def model_output(trace_id: str, raw: str, inputs: int, outputs: int) -> dict[str, Any]:
    return {
        "traceId": trace_id,
        "rawResponse": {"content": raw},
        "metadata": {
            "clientRequestId": f"req-{trace_id}",
            "totalTimeMs": 800,
            **usage(inputs, outputs),
        },
    }


CITATION = {
    "generatedResponsePart": {
        "textResponsePart": {"text": "within 30 days", "span": {"start": 0, "end": 14}}
    },
    "retrievedReferences": [REFERENCE],
}

# What the full run's model invocations report, summed.
FULL_RUN_USAGE = {
    "input_tokens": 120 + 900 + 1100 + 400 + 1300 + 200,
    "output_tokens": 10 + 60 + 45 + 30 + 80 + 20,
}


def full_run(base: datetime.datetime = BASE_TIME) -> list[bytes]:
    """One agent run: pre-processing, a knowledge-base lookup, an action group, a collaborator
    (with its own model invocation), a guardrail, a final answer, post-processing.

    Event times are ``base`` plus a few seconds; chunks carry no time.
    """

    def trace(*args: Any, **kwargs: Any) -> bytes:
        return _trace(*args, base=base, **kwargs)

    pre, s0, s1, s2, s3 = (f"{RUN}-pre-0", f"{RUN}-0", f"{RUN}-1", f"{RUN}-2", f"{RUN}-3")
    post = f"{RUN}-post-0"
    inner = "9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a-0"
    collab_chain = (SUPERVISOR_ARN, COLLABORATOR_ARN)
    return [
        trace(
            "guardrailTrace",
            None,
            {
                "traceId": f"{RUN}-guardrail-pre-0",
                "action": "NONE",
                "inputAssessments": [{}],
                "metadata": {"totalTimeMs": 80},
            },
            ms=0,
        ),
        trace(
            "preProcessingTrace",
            "modelInvocationInput",
            model_input(pre, "Classify", "PRE_PROCESSING"),
            ms=100,
        ),
        trace(
            "preProcessingTrace",
            "modelInvocationOutput",
            {
                **model_output(pre, "<category>D</category>", 120, 10),
                "parsedResponse": {"isValid": True, "rationale": "A question about returns."},
            },
            ms=400,
        ),
        trace(
            "orchestrationTrace", "modelInvocationInput", model_input(s0, "Answer the user"), ms=500
        ),
        trace(
            "orchestrationTrace",
            "modelInvocationOutput",
            model_output(s0, "<thinking>search</thinking>", 900, 60),
            ms=1300,
        ),
        trace(
            "orchestrationTrace",
            "rationale",
            {"traceId": s0, "text": "I should search the policies."},
            ms=1310,
        ),
        trace(
            "orchestrationTrace",
            "invocationInput",
            {
                "traceId": s0,
                "invocationType": "KNOWLEDGE_BASE",
                "knowledgeBaseLookupInput": {"knowledgeBaseId": KB_ID, "text": "return policy"},
            },
            ms=1320,
        ),
        trace(
            "orchestrationTrace",
            "observation",
            {
                "traceId": s0,
                "type": "KNOWLEDGE_BASE",
                "knowledgeBaseLookupOutput": {
                    "retrievedReferences": [REFERENCE, REFERENCE_2],
                    "metadata": {"totalTimeMs": 200},
                },
            },
            ms=1520,
        ),
        trace(
            "orchestrationTrace",
            "modelInvocationInput",
            model_input(s1, "Answer the user"),
            ms=1600,
        ),
        trace(
            "orchestrationTrace",
            "modelInvocationOutput",
            model_output(s1, "<invoke>lookup</invoke>", 1100, 45),
            ms=2300,
        ),
        trace(
            "orchestrationTrace",
            "invocationInput",
            {
                "traceId": s1,
                "invocationType": "ACTION_GROUP",
                "actionGroupInvocationInput": {
                    "actionGroupName": "orders",
                    "function": "get_order",
                    "executionType": "LAMBDA",
                    "parameters": [{"name": "order_id", "type": "string", "value": "A-1001"}],
                },
            },
            ms=2310,
        ),
        trace(
            "orchestrationTrace",
            "observation",
            {
                "traceId": s1,
                "type": "ACTION_GROUP",
                "actionGroupInvocationOutput": {
                    "text": '{"status": "delivered", "days_ago": 12}',
                    "metadata": {"totalTimeMs": 150},
                },
            },
            ms=2460,
        ),
        trace(
            "orchestrationTrace",
            "invocationInput",
            {
                "traceId": s2,
                "invocationType": "AGENT_COLLABORATOR",
                "agentCollaboratorInvocationInput": {
                    "agentCollaboratorName": "refunds",
                    "agentCollaboratorAliasArn": COLLABORATOR_ARN,
                    "input": {"type": "TEXT", "text": "Can order A-1001 be refunded?"},
                },
            },
            ms=2500,
        ),
        trace(
            "orchestrationTrace",
            "modelInvocationInput",
            model_input(inner, "Refund rules"),
            ms=2600,
            chain=collab_chain,
            collaborator="refunds",
        ),
        trace(
            "orchestrationTrace",
            "modelInvocationOutput",
            model_output(inner, "Yes, refundable.", 400, 30),
            ms=3000,
            chain=collab_chain,
            collaborator="refunds",
        ),
        trace(
            "orchestrationTrace",
            "observation",
            {"traceId": inner, "type": "FINISH", "finalResponse": {"text": "Yes, refundable."}},
            ms=3010,
            chain=collab_chain,
            collaborator="refunds",
        ),
        trace(
            "orchestrationTrace",
            "observation",
            {
                "traceId": s2,
                "type": "AGENT_COLLABORATOR",
                "agentCollaboratorInvocationOutput": {
                    "agentCollaboratorName": "refunds",
                    "agentCollaboratorAliasArn": COLLABORATOR_ARN,
                    "output": {"type": "TEXT", "text": "Yes, refundable."},
                    "metadata": {"totalTimeMs": 500},
                },
            },
            ms=3050,
        ),
        trace(
            "orchestrationTrace",
            "modelInvocationInput",
            model_input(s3, "Answer the user"),
            ms=3100,
        ),
        trace(
            "orchestrationTrace",
            "modelInvocationOutput",
            model_output(s3, "<answer>Yes</answer>", 1300, 80),
            ms=3900,
        ),
        trace(
            "orchestrationTrace",
            "observation",
            {
                "traceId": s3,
                "type": "FINISH",
                "finalResponse": {
                    "text": "Yes: within 30 days.",
                    "metadata": {"operationTotalTimeMs": 4100},
                },
            },
            ms=3910,
        ),
        chunk("Yes: ", [CITATION]),
        chunk("within 30 days."),
        trace(
            "postProcessingTrace",
            "modelInvocationInput",
            model_input(post, "Polish", "POST_PROCESSING"),
            ms=4000,
        ),
        trace(
            "postProcessingTrace",
            "modelInvocationOutput",
            {
                **model_output(post, "Yes: within 30 days.", 200, 20),
                "parsedResponse": {"text": "Yes: within 30 days."},
            },
            ms=4200,
        ),
    ]
