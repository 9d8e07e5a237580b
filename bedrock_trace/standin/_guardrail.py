"""ApplyGuardrail answers."""

from __future__ import annotations

import math

from bedrock_trace.standin._answer import _Answer
from bedrock_trace.standin._request import _View
from bedrock_trace.standin._wire import _JsonObject


def _guardrail_body(answer: _Answer, view: _View) -> _JsonObject:
    units = max(1, math.ceil(len(view.user_text) / 1000))
    usage = {
        "topicPolicyUnits": units,
        "contentPolicyUnits": units,
        "wordPolicyUnits": units,
        "sensitiveInformationPolicyUnits": units,
        "sensitiveInformationPolicyFreeUnits": 0,
        "contextualGroundingPolicyUnits": 0,
    }
    coverage = {"textCharacters": {"guarded": len(view.user_text), "total": len(view.user_text)}}
    assessment: _JsonObject = {
        "invocationMetrics": {
            "guardrailProcessingLatency": answer.latency_ms,
            "usage": usage,
            "guardrailCoverage": coverage,
        }
    }
    body: _JsonObject = {
        "usage": usage,
        "action": answer.guardrail_action,
        "outputs": [],
        "assessments": [assessment],
        "guardrailCoverage": coverage,
    }
    if answer.guardrail_action == "GUARDRAIL_INTERVENED":
        body["actionReason"] = "Guardrail blocked."
        body["outputs"] = [{"text": answer.text or "Sorry, the model cannot answer this."}]
        topic = {"name": "Blocked topic", "type": "DENY", "action": "BLOCKED", "detected": True}
        assessment["topicPolicy"] = {"topics": [topic]}
    return body
