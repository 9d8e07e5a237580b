"""What both services share on the wire: error tables, content types, JSON helpers."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Final, TypeAlias

# HTTP status of each modeled Bedrock Runtime error (botocore's service-2.json, "error" traits).
_ERROR_STATUS: Final[Mapping[str, int]] = {
    "AccessDeniedException": 403,
    "ConflictException": 400,
    "InternalServerException": 500,
    "ModelErrorException": 424,
    "ModelNotReadyException": 429,
    "ModelStreamErrorException": 424,
    "ModelTimeoutException": 408,
    "ResourceNotFoundException": 404,
    "ServiceQuotaExceededException": 400,
    "ServiceUnavailableException": 503,
    "ThrottlingException": 429,
    "ValidationException": 400,
}
# Where Agents for Amazon Bedrock Runtime's model differs (or adds codes).
_AGENT_ERROR_STATUS: Final[Mapping[str, int]] = {
    **_ERROR_STATUS,
    "BadGatewayException": 502,
    "ConflictException": 409,
    "DependencyFailedException": 424,
    "ModelNotReadyException": 424,
}
# Messages as Bedrock words them, so that logs and spans of a stand-in run look familiar.
_ERROR_MESSAGES: Final[Mapping[str, str]] = {
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "InternalServerException": "The system encountered an unexpected error during processing. "
    "Try your request again.",
    "ModelErrorException": "The model encountered an error processing the request.",
    "ModelNotReadyException": "The model is not ready to serve inference requests.",
    "ModelStreamErrorException": "The model encountered an error while streaming the response.",
    "ModelTimeoutException": "Model has timed out in processing the request. "
    "Try your request again.",
    "ResourceNotFoundException": "The requested resource could not be found.",
    "ServiceQuotaExceededException": "Your request exceeds the service quota for your account.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ValidationException": "The provided request is not valid.",
    "DependencyFailedException": "A dependency of the agent failed to process the request.",
    "BadGatewayException": "There was an issue with a dependency due to a server issue.",
}
_MALFORMED = "Malformed input request, please reformat your input and try again."
_ERROR_TYPE_SUFFIX: Final = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_EVENTSTREAM: Final = "application/vnd.amazon.eventstream"
_JSON: Final = "application/json"
# Request headers that carry credentials; never recorded.
_SECRET_HEADERS: Final = frozenset({"authorization", "x-amz-security-token"})

_JsonObject: TypeAlias = dict[str, Any]


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _text_chars(value: Any) -> int:
    """Characters of all the strings in a JSON document (for token estimates)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(_text_chars(item) for item in value.values())
    if isinstance(value, list):
        return sum(_text_chars(item) for item in value)
    return 0


def _stamp(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds, as the agent runtime writes its timestamps."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _word_pieces(text: str) -> list[str]:
    """The text split into words with their surrounding spaces (a stream's text deltas)."""
    return re.findall(r"\s*\S+\s*", text) or [text]
