"""The OpenTelemetry-based peers: other tracers of Bedrock Runtime calls, as bench configurations.

Informative configurations of ``bench/run.py``, installed from ``bench/requirements-peers.txt``
(the benchmark runs without them, and says so). Each peer records into an OpenTelemetry SDK
``TracerProvider`` of its own (``SimpleSpanProcessor`` + ``InMemorySpanExporter``, emptied
after every batch), always passed as ``tracer_provider=``: never the global provider, which
MLflow may share. Metrics and logs go to no-op providers: the peers are measured as tracers.
Each peer runs with its defaults otherwise (content capture included or not, as shipped).

``otel_botocore``
    opentelemetry-instrumentation-botocore (its Bedrock extension). It wraps
    ``BaseClient._make_api_call`` and ``Endpoint.prepare_request`` at class level, so while
    instrumented it would trace every client of the process: it is instrumented right before
    each of its batches and uninstrumented right after (:meth:`Peer.enter` / :meth:`Peer.exit`),
    and every other batch first checks that the class is unwrapped (:func:`class_patched`).
``openinference``
    openinference-instrumentation-bedrock. It wraps ``ClientCreator.create_client`` and
    replaces the Bedrock methods *on each client created afterwards* (instance attributes).
    Its ``uninstrument()`` restores those clients' methods too, so it stays instrumented for
    the whole run; clients created while it is (autolog's) are created under OpenTelemetry's
    ``suppress_instrumentation()``, which its wrapper honours.
``openllmetry``
    opentelemetry-instrumentation-bedrock (OpenLLMetry). Also a ``create_client`` wrapper
    that sets instance methods on each new client; its ``uninstrument()`` only removes the
    ``create_client`` wrapper, so it is uninstrumented right after its client is created.

The per-client peers' clients are created after the plain and registered clients and before
autolog is enabled (autolog patches the class of every client created after it);
``workloads.make_clients`` checks that every client is instrumented by its own tracer only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from botocore.client import BaseClient
from botocore.endpoint import Endpoint

OTEL_BOTOCORE = "otel_botocore"
OPENINFERENCE = "openinference"
OPENLLMETRY = "openllmetry"
NAMES: tuple[str, ...] = (OTEL_BOTOCORE, OPENINFERENCE, OPENLLMETRY)

#: config name -> the distribution that provides it
DISTRIBUTIONS = {
    OTEL_BOTOCORE: "opentelemetry-instrumentation-botocore",
    OPENINFERENCE: "openinference-instrumentation-bedrock",
    OPENLLMETRY: "opentelemetry-instrumentation-bedrock",
}

#: the client methods each peer replaces on a client it instruments (per-client peers)
BEDROCK_METHODS = (
    "converse",
    "converse_stream",
    "invoke_model",
    "invoke_model_with_response_stream",
)


@dataclass
class Peer:
    """One peer: its client, its own span destination, and what it must record.

    Attributes:
        name: the configuration name (``otel_botocore``).
        client: the bedrock-runtime client its calls go through.
        exporter: the in-memory exporter of its own TracerProvider.
        span_name: the name of the one span it records for a call of ``(method, model_id)``.
        enter: run right before each of its batches (class-level peers instrument here).
        exit: run right after each of its batches.
        per_client: it replaced methods on its client (else it patches a class, in ``enter``).
    """

    name: str
    client: Any
    exporter: Any
    span_name: Callable[[str, str], str]
    enter: Callable[[], None] = lambda: None
    exit: Callable[[], None] = lambda: None
    per_client: bool = True

    @property
    def distribution(self) -> str:
        return DISTRIBUTIONS[self.name]

    def span_names(self) -> list[str]:
        """The names of the spans it finished since the last :meth:`clear`."""
        return [span.name for span in self.exporter.get_finished_spans()]

    def clear(self) -> None:
        self.exporter.clear()


@dataclass
class Loaded:
    """The peers set up for a run, and those that could not be (with why)."""

    peers: list[Peer] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


def installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _provider() -> tuple[Any, Any]:
    """A TracerProvider of its own, exporting synchronously into memory."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _no_op_providers() -> dict[str, Any]:
    from opentelemetry._logs import NoOpLoggerProvider
    from opentelemetry.metrics import NoOpMeterProvider

    return {"meter_provider": NoOpMeterProvider(), "logger_provider": NoOpLoggerProvider()}


#: the class attributes a class-level peer wraps, as botocore defines them (read at import,
#: before any peer is instrumented)
_CLASS_ATTRIBUTES = ((BaseClient, "_make_api_call"), (Endpoint, "prepare_request"))
_ORIGINALS = tuple(vars(cls)[name] for cls, name in _CLASS_ATTRIBUTES)


def class_patched() -> bool:
    """Whether a class-level wrapper (opentelemetry-instrumentation-botocore's) is active."""
    current = tuple(vars(cls)[name] for cls, name in _CLASS_ATTRIBUTES)
    return any(now is not then for now, then in zip(current, _ORIGINALS, strict=True))


def instance_patched(client: Any) -> bool:
    """Whether a per-client peer replaced Bedrock methods on this client."""
    return any(name in vars(client) for name in BEDROCK_METHODS)


def _otel_botocore(new_client: Callable[[], Any]) -> Peer:
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

    provider, exporter = _provider()
    instrumentor = BotocoreInstrumentor()
    options = {"tracer_provider": provider, "skip_dep_check": True, **_no_op_providers()}

    def enter() -> None:
        instrumentor.instrument(**options)
        if not class_patched():
            raise RuntimeError("opentelemetry-instrumentation-botocore did not wrap BaseClient")

    def exit() -> None:
        instrumentor.uninstrument()
        if class_patched():
            raise RuntimeError("opentelemetry-instrumentation-botocore left BaseClient wrapped")

    return Peer(
        OTEL_BOTOCORE,
        new_client(),
        exporter,
        lambda method, model: f"chat {model}",
        enter,
        exit,
        per_client=False,
    )


def _openinference(new_client: Callable[[], Any]) -> Peer:
    from openinference.instrumentation.bedrock import BedrockInstrumentor

    provider, exporter = _provider()
    BedrockInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    # Stays instrumented: its uninstrument() would restore this client's methods too.
    return Peer(OPENINFERENCE, new_client(), exporter, lambda method, model: f"bedrock.{method}")


def _openllmetry(new_client: Callable[[], Any]) -> Peer:
    from opentelemetry.instrumentation.bedrock import BedrockInstrumentor

    provider, exporter = _provider()
    instrumentor = BedrockInstrumentor()
    instrumentor.instrument(
        tracer_provider=provider, meter_provider=_no_op_providers()["meter_provider"]
    )
    try:
        client = new_client()
    finally:
        instrumentor.uninstrument()  # removes the create_client wrapper; the client keeps its

    def span_name(method: str, model: str) -> str:
        return f"chat {model.rsplit('.', 1)[-1]}"  # it drops the profile and vendor prefix

    return Peer(OPENLLMETRY, client, exporter, span_name)


#: config name -> how to set the peer up, given a factory of fresh plain clients; in the order
#: of setting up: OpenInference last, as it stays instrumented (it would wrap later clients)
SETUPS: dict[str, Callable[[Callable[[], Any]], Peer]] = {
    OTEL_BOTOCORE: _otel_botocore,
    OPENLLMETRY: _openllmetry,
    OPENINFERENCE: _openinference,
}


def load(new_client: Callable[[], Any], names: Sequence[str] = NAMES) -> Loaded:
    """Set up every installed peer of ``names``, in the order of :data:`SETUPS`.

    Args:
        new_client: makes a fresh bedrock-runtime client of a plain session.
        names: the peers wanted.
    """
    loaded = Loaded()
    for name in [name for name in SETUPS if name in names]:
        if installed_version(DISTRIBUTIONS[name]) is None:
            loaded.missing[name] = "not installed"
            continue
        try:
            loaded.peers.append(SETUPS[name](new_client))
        except ImportError as error:  # installed but not importable here (a version clash)
            loaded.missing[name] = f"cannot be imported: {error}"
    if loaded.peers:
        # OpenTelemetry's attribute limit (128) warns once per attribute dropped: OpenInference
        # flattens every message of the ~100 KB prompt into attributes, hundreds per call. The
        # limit still applies; only the log lines (to stderr, timed) are left out.
        logging.getLogger("opentelemetry.attributes").setLevel(logging.ERROR)
    return loaded


@contextlib.contextmanager
def creating_unobserved() -> Iterator[None]:
    """Create clients that no still-installed ``create_client`` wrapper of a peer touches."""
    try:
        from opentelemetry.instrumentation.utils import suppress_instrumentation
    except ImportError:  # no peer installed: nothing to suppress
        yield
        return
    with suppress_instrumentation():
        yield
