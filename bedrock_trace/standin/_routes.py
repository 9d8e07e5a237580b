"""The HTTP routes of the services the stand-in answers, and botocore's operation names."""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote

import attrs

#: The operations the stand-in answers (botocore's snake_case names), each with its route suffix
#: after ``/model/{modelId}`` (``apply_guardrail`` has a route of its own).
OPERATIONS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "converse": "converse",
        "converse_stream": "converse-stream",
        "invoke_model": "invoke",
        "invoke_model_with_response_stream": "invoke-with-response-stream",
        "count_tokens": "count-tokens",
        "apply_guardrail": "",
    }
)
#: The Agents for Amazon Bedrock Runtime operations the stand-in answers (botocore's names),
#: each with its HTTP path (botocore's ``requestUri``).
AGENT_OPERATIONS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "invoke_agent": "/agents/{agentId}/agentAliases/{agentAliasId}/sessions/{sessionId}/text",
        "invoke_inline_agent": "/agents/{sessionId}",
        "retrieve": "/knowledgebases/{knowledgeBaseId}/retrieve",
        "retrieve_and_generate": "/retrieveAndGenerate",
        "retrieve_and_generate_stream": "/retrieveAndGenerateStream",
        "rerank": "/rerank",
        "invoke_flow": "/flows/{flowIdentifier}/aliases/{flowAliasIdentifier}",
    }
)
_STREAMING: Final = frozenset(
    {"converse_stream", "invoke_model_with_response_stream"}
    | {"invoke_agent", "invoke_inline_agent", "retrieve_and_generate_stream", "invoke_flow"}
)
_BY_SUFFIX: Final = {suffix: name for name, suffix in OPERATIONS.items() if suffix}

# The model id is one path segment, percent-encoded by botocore (":" and "/" included); the
# greedy group still copes with a client that leaves "/" of an ARN unencoded.
_MODEL_ROUTE: Final = re.compile(r"^/model/(?P<model>.+)/(?P<suffix>[a-z-]+)$")
_GUARDRAIL_ROUTE: Final = re.compile(r"^/guardrail/(?P<id>[^/]+)/version/(?P<version>[^/]+)/apply$")


def _path_pattern(template: str) -> re.Pattern[str]:
    """``/agents/{agentId}/...`` as a regular expression with one group per label."""
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(f"^{pattern}$")


_AGENT_ROUTES: Final = tuple(
    (name, _path_pattern(template)) for name, template in AGENT_OPERATIONS.items()
)
# The path label that names the resource a rule's ``agent`` condition matches, per operation.
_RESOURCE_LABEL: Final = {
    "invoke_agent": "agentId",
    "retrieve": "knowledgeBaseId",
    "invoke_flow": "flowIdentifier",
}
_ALIAS_LABEL: Final = {"invoke_agent": "agentAliasId", "invoke_flow": "flowAliasIdentifier"}


def _snake_operation(value: str | None) -> str | None:
    if value is None or value in ("", "*"):
        return None
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", value).replace("-", "_").lower()
    if name not in OPERATIONS and name not in AGENT_OPERATIONS:
        known = ", ".join(sorted({*OPERATIONS, *AGENT_OPERATIONS}))
        raise ValueError(f"unknown operation {value!r}; expected one of {known} (or '*')")
    return name


@attrs.frozen
class _Route:
    operation: str
    service: str = "bedrock-runtime"
    model_id: str | None = None
    guardrail_id: str | None = None
    guardrail_version: str | None = None
    #: Agent runtime: the agent, knowledge base or flow id in the path, its alias, the session.
    resource_id: str | None = None
    alias_id: str | None = None
    session_id: str | None = None


def _route(method: str, path: str) -> _Route | None:
    path = path.split("?", 1)[0]
    if method != "POST":
        return None
    match = _MODEL_ROUTE.match(path)
    if match and match["suffix"] in _BY_SUFFIX:
        return _Route(_BY_SUFFIX[match["suffix"]], model_id=unquote(match["model"]))
    match = _GUARDRAIL_ROUTE.match(path)
    if match:
        return _Route(
            "apply_guardrail",
            guardrail_id=unquote(match["id"]),
            guardrail_version=unquote(match["version"]),
        )
    for name, pattern in _AGENT_ROUTES:
        match = pattern.match(path)
        if match:
            labels = {key: unquote(value) for key, value in match.groupdict().items()}
            return _Route(
                name,
                service="bedrock-agent-runtime",
                resource_id=labels.get(_RESOURCE_LABEL.get(name, "")),
                alias_id=labels.get(_ALIAS_LABEL.get(name, "")),
                session_id=labels.get("sessionId"),
            )
    return None
