"""The botocore event handlers: thin, guarded, and returning None.

One :class:`Handlers` object serves one registered target. Clients copy their session's
emitter, so they hold these very bound methods: flipping ``active`` here reaches every client
already created from the session (``unregister`` takes effect for them too).

botocore rules these handlers follow (DESIGN.md section 5): accept ``**kwargs``; return None
(a value from ``before-call`` would replace the HTTP request); never raise (an exception
aborts the caller's API call), hence the guards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bedrock_trace import _spans
from bedrock_trace._agent_operations import agent_operation_for
from bedrock_trace._call import CONTEXT_KEY, Call, finish_exception, finish_response, open_span
from bedrock_trace._config import TraceConfig
from bedrock_trace._guard import Guard
from bedrock_trace._operations import Operation, operation_for

# Each traced service, by the name in its event names, and its operation lookup.
_LOOKUPS: dict[str, Callable[[str, bool], Operation | None]] = {
    "bedrock-runtime": operation_for,
    "bedrock-agent-runtime": agent_operation_for,
}
#: The botocore services whose calls are traced.
SERVICES: tuple[str, ...] = tuple(_LOOKUPS)
_BEFORE_CALL_PREFIXES = tuple(f"before-call.{service}." for service in SERVICES)

_guard_params = Guard("before-parameter-build")
_guard_before = Guard("before-call")
_guard_after = Guard("after-call")
_guard_error = Guard("after-call-error")


class Handlers:
    """Event handlers bound to one registration's switch and configuration."""

    __slots__ = ("__weakref__", "active", "config")

    def __init__(self, config: TraceConfig) -> None:
        self.active = True
        self.config = config

    def on_before_parameter_build(
        self, params: dict[str, Any], model: Any, context: dict[str, Any], **kwargs: Any
    ) -> None:
        """Keep a shallow view of the caller's own parameters for the span's inputs."""
        if not self.active:
            return
        with _guard_params:
            lookup = _LOOKUPS.get(model.service_model.service_name)
            op = lookup(model.name, model.has_event_stream_output) if lookup else None
            if op is not None and CONTEXT_KEY not in context:
                context[CONTEXT_KEY] = Call(op, self.config, dict(params))

    def on_before_call(
        self, event_name: str, model: Any, params: dict[str, Any], context: Any, **kwargs: Any
    ) -> None:
        """Open the span; registered first on ``before-call.*.*`` so a Stubber cannot hide it."""
        if not event_name.startswith(_BEFORE_CALL_PREFIXES) or not self.active:
            return
        with _guard_before:
            call = context.get(CONTEXT_KEY)
            if call is None or call.span is not None:
                return  # registered mid-call (no snapshot), or already opened
            open_span(call, call.params, context, params.get("body"))
            if call.span is None:
                del context[CONTEXT_KEY]  # tracing is off: nothing to end

    def on_after_call(
        self, http_response: Any, parsed: Any, model: Any, context: Any, **kwargs: Any
    ) -> None:
        """End the span with the response (or the HTTP error the caller is about to get)."""
        call = context.pop(CONTEXT_KEY, None)
        if call is None or call.span is None:
            return
        with _guard_after:
            try:
                finish_response(call, http_response, parsed, model, context)
            finally:
                if not call.ended:  # the mapper failed: still end the span, once
                    call.ended = True
                    _spans.end(call.span, status="ERROR")

    def on_after_call_error(self, exception: BaseException, context: Any, **kwargs: Any) -> None:
        """End the span with the transport error (connection, timeout, credentials)."""
        call = context.pop(CONTEXT_KEY, None)
        if call is None or call.span is None:
            return
        with _guard_error:
            try:
                finish_exception(call, exception, context)
            finally:
                if not call.ended:
                    call.ended = True
                    _spans.end(call.span, status="ERROR")


def unique_id(method: str, service: str | None = None) -> str:
    """The stable unique id of a handler: registering twice is a no-op in botocore.

    botocore keeps unique ids per emitter, not per event: a handler registered for two
    services needs an id for each, or the second registration silently does nothing.
    """
    return f"bedrock_trace.{method}" if service is None else f"bedrock_trace.{method}.{service}"


# The handler table: (event, method, register first, unique id). ``before-call.*.*`` with
# register_first is the only key a botocore Stubber cannot shadow (DESIGN.md 5.6); one handler
# there serves every service. The other events are emitted to every handler, so the
# service-specific keys keep other services free.
TABLE: tuple[tuple[str, str, bool, str], ...] = (
    ("before-call.*.*", "on_before_call", True, unique_id("on_before_call")),
    *(
        (f"{event}.{service}", method, False, unique_id(method, service))
        for service in SERVICES
        for event, method in (
            ("before-parameter-build", "on_before_parameter_build"),
            ("after-call", "on_after_call"),
            ("after-call-error", "on_after_call_error"),
        )
    ),
)
