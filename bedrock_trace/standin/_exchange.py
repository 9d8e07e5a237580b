"""What a service module gets to answer one request, and what it gives back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from bedrock_trace.standin._answer import _Answer
from bedrock_trace.standin._request import _View
from bedrock_trace.standin._routes import _Route
from bedrock_trace.standin._scenario import Reply


@attrs.frozen
class _Exchange:
    """One request with its answer decided: the route, the parsed body, the rule's reply."""

    route: _Route
    body: Any
    view: _View
    answer: _Answer
    #: The matching rule's reply as written (None: the default), for service-specific fields.
    reply: Reply | None
    request_id: str
    #: When the request arrived (UTC), for the timestamps an answer carries.
    received: datetime
    #: The scenario's delay before each stream event, in seconds.
    per_event: float = 0.0


@attrs.frozen
class _Response:
    """A successful response: a JSON ``document`` or the event-stream ``messages`` of a stream."""

    headers: Mapping[str, str]
    document: bytes | None = None
    messages: list[bytes] | None = None
