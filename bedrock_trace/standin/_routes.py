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
_STREAMING: Final = frozenset({"converse_stream", "invoke_model_with_response_stream"})
_BY_SUFFIX: Final = {suffix: name for name, suffix in OPERATIONS.items() if suffix}

# The model id is one path segment, percent-encoded by botocore (":" and "/" included); the
# greedy group still copes with a client that leaves "/" of an ARN unencoded.
_MODEL_ROUTE: Final = re.compile(r"^/model/(?P<model>.+)/(?P<suffix>[a-z-]+)$")
_GUARDRAIL_ROUTE: Final = re.compile(r"^/guardrail/(?P<id>[^/]+)/version/(?P<version>[^/]+)/apply$")


def _snake_operation(value: str | None) -> str | None:
    if value is None or value in ("", "*"):
        return None
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", value).replace("-", "_").lower()
    if name not in OPERATIONS:
        known = ", ".join(sorted(OPERATIONS))
        raise ValueError(f"unknown operation {value!r}; expected one of {known} (or '*')")
    return name


@attrs.frozen
class _Route:
    operation: str
    service: str = "bedrock-runtime"
    model_id: str | None = None
    guardrail_id: str | None = None
    guardrail_version: str | None = None


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
    return None
