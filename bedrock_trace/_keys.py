"""Every span attribute key and event name this package writes, in one place.

MLflow's own keys come from MLflow's constants so that the MLflow UI and trace searches read
our spans exactly as they read spans from ``mlflow.bedrock.autolog``. Keys of our own live
under ``bedrock_trace.`` and are listed in ``docs/attributes.md``.
"""

from __future__ import annotations

from mlflow.entities import SpanType
from mlflow.tracing.constant import SpanAttributeKey, TokenUsageKey, TraceMetadataKey

__all__ = ["SpanAttributeKey", "SpanType", "TokenUsageKey"]

SPAN_NAME_PREFIX = "BedrockRuntime."
MESSAGE_FORMAT_BEDROCK = "bedrock"

# MLflow keys (aliases, so the rest of the package imports every key from here).
MODEL = SpanAttributeKey.MODEL
PROVIDER = SpanAttributeKey.MODEL_PROVIDER
MESSAGE_FORMAT = SpanAttributeKey.MESSAGE_FORMAT
CHAT_USAGE = SpanAttributeKey.CHAT_USAGE
CHAT_TOOLS = SpanAttributeKey.CHAT_TOOLS
# Read by the MLflow UI's Chat view before it tries to parse inputs and outputs; no constant
# for it in mlflow.tracing.constant.
CHAT_MESSAGES = "mlflow.chat.messages"
# Span type of image generation calls; MLflow's SpanType has none, and span types are free text.
IMAGE_GENERATION = "IMAGE_GENERATION"

INPUT_TOKENS = TokenUsageKey.INPUT_TOKENS
OUTPUT_TOKENS = TokenUsageKey.OUTPUT_TOKENS
TOTAL_TOKENS = TokenUsageKey.TOTAL_TOKENS
CACHE_READ_TOKENS = TokenUsageKey.CACHE_READ_INPUT_TOKENS
CACHE_WRITE_TOKENS = TokenUsageKey.CACHE_CREATION_INPUT_TOKENS

# Our own keys.
_NS = "bedrock_trace."
OPERATION = _NS + "operation"
REGION = _NS + "region"
REQUEST_ID = _NS + "request_id"
HTTP_STATUS = _NS + "http_status"
RETRY_ATTEMPTS = _NS + "retry_attempts"
ERROR_CODE = _NS + "error_code"
LATENCY_MS = _NS + "latency_ms"
STOP_REASON = _NS + "stop_reason"
USAGE_SOURCE = _NS + "usage_source"
BODY_ERROR = _NS + "body_error"
CONTENT_TYPE = _NS + "content_type"
INCOMPLETE = _NS + "incomplete"
END_REASON = _NS + "end_reason"
TRUNCATED = _NS + "truncated"  # the span attribute, and the marker key in a cut payload
STREAM_EVENTS = _NS + "stream_events"
DROPPED_EVENTS = _NS + "dropped_events"
TIME_TO_FIRST_TOKEN_MS = _NS + "time_to_first_token_ms"
FIRST_BYTE_LATENCY_MS = _NS + "first_byte_latency_ms"

# Span event names.
EXCEPTION_EVENT = "exception"

# --- Bedrock Agents runtime (bedrock-agent-runtime) ----------------------------------------

AGENT_SPAN_NAME_PREFIX = "BedrockAgentRuntime."
# MLflow 3.x has WORKFLOW; an older MLflow gets CHAIN, which its UI renders the same way.
WORKFLOW: str = getattr(SpanType, "WORKFLOW", SpanType.CHAIN)
# Trace metadata MLflow's Sessions view groups traces by.
TRACE_SESSION: str = getattr(TraceMetadataKey, "TRACE_SESSION", "mlflow.trace.session")

SESSION_ID = _NS + "session_id"
AGENT_ID = _NS + "agent_id"
AGENT_ALIAS_ID = _NS + "agent_alias_id"
AGENT_VERSION = _NS + "agent_version"
COLLABORATOR = _NS + "collaborator"
AGENT_TRACE_ID = _NS + "agent_trace_id"
PROMPT_TYPE = _NS + "prompt_type"
ACTION_GROUP = _NS + "action_group"
KNOWLEDGE_BASE_ID = _NS + "knowledge_base_id"
GUARDRAIL_ACTION = _NS + "guardrail_action"
FAILURE_CODE = _NS + "failure_code"
FAILURE_REASON = _NS + "failure_reason"
FLOW_NODE = _NS + "flow_node"
EXECUTION_ID = _NS + "execution_id"
