"""Fault injection into MLflow's span machinery, through an OpenTelemetry tracer provider.

MLflow's spans wrap the OpenTelemetry spans its tracer provider creates. The provider here
carries a span processor that, for each Bedrock span it sees start, makes one operation of
that span instance raise: attribute writes of the inputs or outputs (what MLflow's
``set_inputs`` / ``set_outputs`` do; alone, or in one ``set_attributes`` call as the fast path
writes them), ``add_event``, or ``end`` (the first call fails without ending the span). Span
creation itself fails through the tracer. Only objects this provider creates are touched; no
class, module or botocore object is changed.
"""

from __future__ import annotations

from typing import Any

from mlflow.tracing.constant import SpanAttributeKey
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

FAULTS = ("start", "set_inputs", "set_outputs", "add_event", "end")


class InjectedFault(RuntimeError):
    """The error the faulty spans raise."""


class _FaultInjector(SpanProcessor):
    def __init__(self, provider: FaultyTracerProvider) -> None:
        self._provider = provider

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if not self._provider.matches(span.name):
            return
        provider, fault = self._provider, self._provider.fault
        real_set_attribute, real_add_event, real_end = span.set_attribute, span.add_event, span.end
        real_set_attributes = span.set_attributes
        faulty = {
            "set_inputs": SpanAttributeKey.INPUTS,
            "set_outputs": SpanAttributeKey.OUTPUTS,
        }.get(fault)

        def set_attribute(key: str, value: Any) -> None:
            if key == faulty:
                provider.fire(f"set_attribute({key})")
            real_set_attribute(key, value)

        def set_attributes(attributes: Any) -> None:
            if faulty in attributes:
                provider.fire(f"set_attributes({faulty})")
            real_set_attributes(attributes)

        def add_event(*args: Any, **kwargs: Any) -> None:
            if fault == "add_event":
                provider.fire("add_event")
            real_add_event(*args, **kwargs)

        failed: list[bool] = []

        def end(*args: Any, **kwargs: Any) -> None:
            # The first end fails before ending anything, as MLflow's end() does when a step
            # before its last one raises: only ending the OpenTelemetry span again ends it.
            if fault == "end" and not failed:
                failed.append(True)
                provider.fire("end")
            real_end(*args, **kwargs)

        span.set_attribute, span.set_attributes = set_attribute, set_attributes
        span.add_event, span.end = add_event, end


class _FaultyTracer:
    def __init__(self, real: Any, provider: FaultyTracerProvider) -> None:
        self._real = real
        self._provider = provider

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._provider.fault == "start" and self._provider.matches(name):
            self._provider.fire("start_span")
        return self._real.start_span(name, *args, **kwargs)


class FaultyTracerProvider(TracerProvider):
    """A tracer provider whose Bedrock spans fail at ``fault`` (one of :data:`FAULTS`)."""

    def __init__(self, fault: str, prefixes: tuple[str, ...] = ("BedrockRuntime.",)) -> None:
        """Args:
        prefixes: the names of the spans that fail start with one of these ("": every span).
        """
        super().__init__()
        self.fault = fault
        self.prefixes = prefixes
        self.fired = 0  # how many times the fault was injected
        self.add_span_processor(_FaultInjector(self))

    def matches(self, name: str) -> bool:
        return name.startswith(self.prefixes)

    def fire(self, what: str) -> None:
        self.fired += 1
        raise InjectedFault(what)

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        return _FaultyTracer(super().get_tracer(*args, **kwargs), self)
