"""The benchmark's world: offline clients, fixed HTTP responses, workloads and configurations.

Everything here is shared by ``bench/run.py`` (timing and memory) and
``bench/profile_hot_paths.py`` (cProfile of bedrock_trace's hot paths).

Four configurations run the same workload:

``untraced``
    a plain ``bedrock-runtime`` client; the network is replaced by a ``before-send`` handler
    that returns the same fixed bytes every time, so botocore still serialises, signs and
    parses for real.
``bedrock_trace``
    a client of a session passed to ``bedrock_trace.register``.
``autolog``
    a client created after ``mlflow.bedrock.autolog()``, from a session bedrock_trace never
    saw (autolog patches the client *class* it creates, and botocore builds a new class for
    every client, so the other clients stay untouched).
``floor``
    no botocore at all: the same MLflow span (name, type, inputs, outputs, model, provider,
    message format, token usage, one span event per stream event) made directly with
    ``mlflow.start_span_no_context``; what any MLflow-based tracer must at least pay.
``floor_in_situ``
    the floor's MLflow work done around a real untraced call (span opened before the call,
    each stream event recorded as botocore yields it, span ended after): a minimal tracer
    that maps nothing. Informative: how much of the gap between a real tracer and the floor
    is interleaving MLflow's work with botocore's (colder caches, more garbage collection).
``otel_botocore``, ``openinference``, ``openllmetry``
    informative: the OpenTelemetry-based peers, each into a TracerProvider of its own (see
    ``bench/peers.py``); present only where installed (``bench/requirements-peers.txt``).

Every workload is checked once (:meth:`Bench.check`) before it is timed: each configuration
produces exactly the spans it should, and nothing else does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import mlflow
import peers as P
import urllib3
from botocore.awsrequest import AWSResponse
from mlflow.entities import SpanEvent
from mlflow.tracing.constant import SpanAttributeKey

import bedrock_trace
from bedrock_trace.testing import (
    TraceCapture,
    chunk_event,
    converse_stream_messages,
)

UNTRACED = "untraced"
BEDROCK_TRACE = "bedrock_trace"
AUTOLOG = "autolog"
FLOOR = "floor"
FLOOR_IN_SITU = "floor_in_situ"
CONFIGS: tuple[str, ...] = (UNTRACED, BEDROCK_TRACE, AUTOLOG, FLOOR, FLOOR_IN_SITU, *P.NAMES)

REGION = "us-east-1"
CLAUDE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
REQUEST_ID = "11111111-2222-4333-8444-555555555555"

Call = Callable[[], None]


def isolate_from_machine_config() -> None:
    """Keep the machine's AWS profile, credentials and endpoints out of the benchmark."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "AWS_ENDPOINT_URL_S3",
    ):
        os.environ.pop(name, None)
    empty = os.path.join(tempfile.gettempdir(), "bedrock-trace-bench-empty-aws-config")
    with open(empty, "w", encoding="utf-8"):
        pass
    os.environ["AWS_CONFIG_FILE"] = empty
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = empty
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def make_session() -> boto3.Session:
    """A session with fake static credentials: nothing is looked up, nothing leaves."""
    return boto3.Session(
        aws_access_key_id="AKIAFAKEBENCHMARK000",
        aws_secret_access_key="fake-secret-key-for-the-benchmark-0000",
        region_name=REGION,
    )


# --- the fixed network ---------------------------------------------------------------------


@dataclass(frozen=True)
class FixedResponse:
    """A ``before-send`` handler that answers every request with the same HTTP response.

    It returns what botocore's HTTP layer would: an ``AWSResponse`` over a
    ``urllib3.HTTPResponse`` reading from memory, so botocore parses the body (JSON, XML or
    event stream) exactly as it would a network response. A fresh ``BytesIO`` per request
    keeps it reusable.
    """

    body: bytes
    headers: Mapping[str, str]
    status: int = 200

    @classmethod
    def of(cls, body: bytes, content_type: str, **extra_headers: str) -> FixedResponse:
        """A 200 response with a request id, a content type and a content length."""
        headers = {
            "x-amzn-requestid": REQUEST_ID,
            "x-amz-request-id": REQUEST_ID,
            "content-type": content_type,
            "content-length": str(len(body)),
            **extra_headers,
        }
        return cls(body, headers)

    def __call__(self, request: Any, **kwargs: Any) -> AWSResponse:
        headers = dict(self.headers)
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(self.body), headers=headers, status=self.status, preload_content=False
        )
        return AWSResponse(request.url, self.status, headers, raw)  # type: ignore[arg-type]


@dataclass
class SizedResponses:
    """A ``before-send`` handler answering with the response of the currently chosen size.

    Streams of different sizes share one operation. Switching ``size`` changes the answer
    without touching the client's event emitter (re-registering a handler would empty
    botocore's handler lookup cache and slow the next call down).
    """

    by_size: dict[int, FixedResponse]
    size: int

    def __call__(self, request: Any, **kwargs: Any) -> AWSResponse:
        return self.by_size[self.size](request, **kwargs)


def install(client: Any, service: str, operation: str, response: FixedResponse) -> None:
    """Answer ``operation`` of ``client`` with ``response`` (the network is never used)."""
    client.meta.events.register(
        f"before-send.{service}.{operation}",
        response,
        unique_id=f"bench-fixed-{service}-{operation}",
    )


# --- request and response payloads ---------------------------------------------------------


def small_messages() -> list[dict[str, Any]]:
    """A one-turn chat."""
    return [{"role": "user", "content": [{"text": "Hello! What is the capital of France?"}]}]


def large_messages(target_bytes: int = 100_000) -> list[dict[str, Any]]:
    """A long multi-turn chat of about ``target_bytes`` of JSON (many small content blocks)."""
    sentence = "The quick brown fox jumps over the lazy dog while the cat watches. "
    messages: list[dict[str, Any]] = []
    turn = 0
    while len(json.dumps(messages)) < target_bytes:
        role = "user" if turn % 2 == 0 else "assistant"
        blocks = [{"text": f"[{turn}.{part}] " + sentence * 5} for part in range(6)]
        messages.append({"role": role, "content": blocks})
        turn += 1
    if messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": [{"text": "Summarise the above."}]})
    return messages


def converse_kwargs(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Keyword arguments of a typical ``converse`` / ``converse_stream`` call."""
    return {
        "modelId": CLAUDE,
        "messages": messages,
        "system": [{"text": "You are a concise assistant."}],
        "inferenceConfig": {"maxTokens": 512, "temperature": 0.2},
    }


def anthropic_request_body() -> dict[str, Any]:
    """An Anthropic messages request body for ``invoke_model``."""
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 512,
        "system": "You are a concise assistant.",
        "messages": [{"role": "user", "content": "Hello! What is the capital of France?"}],
    }


CONVERSE_RESPONSE: dict[str, Any] = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [{"text": "The capital of France is Paris. " * 4}],
        }
    },
    "stopReason": "end_turn",
    "usage": {"inputTokens": 25, "outputTokens": 32, "totalTokens": 57},
    "metrics": {"latencyMs": 412},
}

ANTHROPIC_RESPONSE: dict[str, Any] = {
    "id": "msg_bdrk_01ABCDEF",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-haiku-20241022",
    "content": [{"type": "text", "text": "The capital of France is Paris. " * 4}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 25, "output_tokens": 32},
}


def converse_stream_body(events: int) -> bytes:
    """A ConverseStream response of exactly ``events`` events (text in ``events - 4`` deltas)."""
    deltas = events - 4
    messages = converse_stream_messages(
        "tok " * deltas, pieces=deltas, input_tokens=25, output_tokens=deltas
    )
    assert len(messages) == events, (len(messages), events)
    return b"".join(messages)


def anthropic_stream_body(events: int) -> bytes:
    """An InvokeModelWithResponseStream Anthropic response of exactly ``events`` chunks."""
    deltas = events - 5
    chunks: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_bdrk_01ABCDEF",
                "type": "message",
                "role": "assistant",
                "model": "claude-3-5-haiku-20241022",
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 25, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    chunks += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "tok "}}
    ] * deltas
    chunks += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": deltas},
        },
        {
            "type": "message_stop",
            "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": 25,
                "outputTokenCount": deltas,
                "invocationLatency": 2345,
                "firstByteLatency": 321,
            },
        },
    ]
    assert len(chunks) == events
    return b"".join(chunk_event(chunk) for chunk in chunks)


LIST_BUCKETS_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Owner><ID>0123456789abcdef</ID><DisplayName>bench</DisplayName></Owner><Buckets>"
    + b"".join(
        b"<Bucket><Name>bench-bucket-%d</Name>"
        b"<CreationDate>2024-01-0%dT00:00:00.000Z</CreationDate></Bucket>" % (i, i + 1)
        for i in range(3)
    )
    + b"</Buckets></ListAllMyBucketsResult>"
)


# --- workloads -----------------------------------------------------------------------------


@dataclass
class Workload:
    """One kind of call, runnable under each configuration that applies to it.

    Attributes:
        name: short id (``converse_small``).
        title: what a reader sees in the report.
        method: the client method (``converse``).
        kwargs: the caller's keyword arguments, the same for every configuration.
        consume: what the caller does with the response: ``"body"`` reads
            ``response["body"]``; ``"stream"`` / ``"body-stream"`` iterate the whole event
            stream under that key; None does nothing.
        events: stream events per call (None for non-streaming calls).
        span_name: the span each traced configuration must produce; None when no
            configuration traces the workload (S3).
        calls: one zero-argument callable per configuration; filled by :class:`Bench`.
    """

    name: str
    title: str
    method: str
    kwargs: dict[str, Any]
    consume: str | None = None
    events: int | None = None
    span_name: str | None = None
    calls: dict[str, Call] = field(default_factory=dict)

    @property
    def configs(self) -> list[str]:
        """The configurations this workload runs under, in canonical order."""
        return [config for config in CONFIGS if config in self.calls]

    def call_with(self, client: Any) -> Call:
        """One call through ``client``, consuming the response as a caller would."""
        method, kwargs, consume = getattr(client, self.method), self.kwargs, self.consume
        if consume == "body":

            def call() -> None:
                method(**kwargs)["body"].read()

        elif consume in ("stream", "body-stream"):
            key = "stream" if consume == "stream" else "body"

            def call() -> None:
                for _event in method(**kwargs)[key]:
                    pass

        else:

            def call() -> None:
                method(**kwargs)

        return call


@dataclass
class FloorSpec:
    """What the floor configurations record for one workload.

    The inputs are the caller's own keyword arguments (an invoke_model body is decoded from
    JSON per call, as a traced span shows it); the outputs and the model, provider, message
    format and token usage attributes are those of the span bedrock_trace recorded for the
    same call; stream events are the event dicts botocore parsed for the same response.
    """

    span_name: str
    span_type: str
    inputs: dict[str, Any]
    start_attributes: dict[str, Any]
    outputs: Any
    end_attributes: dict[str, Any]
    decode_body: bool = False
    #: botocore's event dicts of one stream (the floor replays them)
    events: Sequence[Mapping[str, Any]] = ()
    #: True for invoke_model streams (``{"chunk": {"bytes": ...}}`` events)
    chunked: bool = False


def _event_recorder(chunked: bool) -> Callable[[Any, Mapping[str, Any]], None]:
    """The least a tracer recording span events does per stream event.

    It produces the event's JSON text (``json.dumps`` of a Converse event's payload; for an
    invoke_model chunk, decode the bytes and parse them to learn the event's type) and adds
    the span event.
    """
    dumps, loads = json.dumps, json.loads
    if chunked:

        def record(span: Any, event: Mapping[str, Any]) -> None:
            text = event["chunk"]["bytes"].decode("utf-8")
            kind = loads(text).get("type", "chunk")
            span.add_event(SpanEvent(kind, attributes={"json": text}))  # type: ignore[abstract]

    else:

        def record(span: Any, event: Mapping[str, Any]) -> None:
            name, payload = next(iter(event.items()))
            span.add_event(SpanEvent(name, attributes={"json": dumps(payload)}))  # type: ignore[abstract]

    return record


def _start(spec: FloorSpec) -> Any:
    inputs = spec.inputs
    if spec.decode_body:  # recording a structured body means parsing the caller's JSON
        inputs = {**inputs, "body": json.loads(inputs["body"])}
    return mlflow.start_span_no_context(
        spec.span_name,
        span_type=spec.span_type,
        parent_span=mlflow.get_current_active_span(),
        inputs=inputs,
        attributes=spec.start_attributes,
    )


def floor_call(spec: FloorSpec) -> Call:
    """The floor: the same MLflow span, made directly, without botocore.

    Opened under the caller's active span, one span event per stream event (see
    :func:`_event_recorder`), ended with the same outputs and usage.
    """
    record = _event_recorder(spec.chunked)

    def call() -> None:
        span = _start(spec)
        for event in spec.events:
            record(span, event)
        span.end(outputs=spec.outputs, attributes=spec.end_attributes, status="OK")

    return call


def floor_in_situ_call(spec: FloorSpec, w: Workload, client: Any) -> Call:
    """The floor's MLflow work done around a real untraced call: a minimal tracer.

    The span opens before the call and ends after it (or after the last stream event), and
    each stream event is recorded as botocore yields it, so MLflow's work runs interleaved
    with botocore's, as in any real tracer. Its overhead over the untraced call is the floor
    including what interleaving costs (colder CPU caches, garbage collection of both).
    It maps nothing: the outputs are the precomputed ones of the floor.
    """
    record = _event_recorder(spec.chunked)
    method, kwargs = getattr(client, w.method), w.kwargs
    key = "stream" if w.consume == "stream" else "body"

    def call() -> None:
        span = _start(spec)
        response = method(**kwargs)
        if w.consume == "body":
            response["body"].read()
        elif w.consume is not None:
            for event in response[key]:
                record(span, event)
        span.end(outputs=spec.outputs, attributes=spec.end_attributes, status="OK")

    return call


@dataclass
class Clients:
    """The clients of every configuration."""

    untraced: Any
    traced: Any
    autolog: Any
    untraced_s3: Any
    traced_s3: Any
    peers: list[P.Peer] = field(default_factory=list)
    #: peer name -> why it is absent
    missing_peers: dict[str, str] = field(default_factory=dict)

    def check_isolation(self) -> None:
        """Each client is instrumented by its own tracer only (peers: see ``bench/peers.py``).

        Raises:
            RuntimeError: a client is patched by a tracer of another configuration.
        """
        mistakes = []
        if _patched(self.untraced) or _patched(self.traced):
            mistakes.append("autolog patched a client created before it was enabled")
        others = (self.untraced, self.traced, self.untraced_s3, self.traced_s3, self.autolog)
        if any(c is not None and P.instance_patched(c) for c in others):
            mistakes.append("a peer replaced methods of a plain, registered or autolog client")
        for peer in self.peers:
            if _patched(peer.client):
                mistakes.append(f"autolog patched the {peer.name} client")
            if P.instance_patched(peer.client) != peer.per_client:
                mistakes.append(f"{peer.name} did not instrument its client as expected")
        if P.class_patched():
            mistakes.append("a class-level peer is instrumented outside its batches")
        if mistakes:
            raise RuntimeError("; ".join(mistakes))


def _patched(client: Any) -> bool:
    """Whether autolog wrapped this client's methods (its wrappers set ``__wrapped__``)."""
    return hasattr(type(client).converse, "__wrapped__")


def make_clients(with_autolog: bool = True, peers: Sequence[str] = ()) -> Clients:
    """Create the clients: plain and registered ones first, then the peers', then autolog's.

    ``mlflow.bedrock.autolog()`` patches ``ClientCreator.create_client`` and, through it, the
    class of every bedrock-runtime client created afterwards; botocore builds a new class per
    client, so clients created before it stay unpatched. Autolog's client comes from a
    session that is never registered with bedrock_trace. The peers' clients come before it
    (see ``bench/peers.py``), and autolog's is created where no peer's ``create_client``
    wrapper acts.

    Args:
        with_autolog: also enable autolog and create its client (else ``autolog`` is None).
        peers: the OpenTelemetry peers wanted (those not installed are listed as missing).

    Raises:
        RuntimeError: the clients are not kept apart as intended.
    """
    plain, traced_session, autolog_session = make_session(), make_session(), make_session()
    bedrock_trace.register(traced_session)
    untraced = plain.client("bedrock-runtime")
    traced = traced_session.client("bedrock-runtime")
    untraced_s3 = plain.client("s3")
    traced_s3 = traced_session.client("s3")
    if _patched(untraced) or _patched(traced):
        raise RuntimeError("autolog is already enabled: the plain clients would be patched")
    loaded = P.load(lambda: make_session().client("bedrock-runtime"), peers)
    autolog = None
    if with_autolog:
        import mlflow.bedrock  # only this configuration needs it

        mlflow.bedrock.autolog(silent=True)
        with P.creating_unobserved():
            autolog = autolog_session.client("bedrock-runtime")
        if not _patched(autolog):
            raise RuntimeError("autolog did not patch its client")
    clients = Clients(
        untraced, traced, autolog, untraced_s3, traced_s3, loaded.peers, loaded.missing
    )
    clients.check_isolation()
    return clients


def fixed_responses(stream_sizes: Sequence[int]) -> dict[str, Any]:
    """The fixed HTTP response of every operation (streams: one per size, switchable)."""
    json_type = "application/json"
    stream_type = "application/vnd.amazon.eventstream"
    return {
        "Converse": FixedResponse.of(json.dumps(CONVERSE_RESPONSE).encode(), json_type),
        "InvokeModel": FixedResponse.of(
            json.dumps(ANTHROPIC_RESPONSE).encode(),
            json_type,
            **{
                "x-amzn-bedrock-input-token-count": "25",
                "x-amzn-bedrock-output-token-count": "32",
                "x-amzn-bedrock-invocation-latency": "412",
            },
        ),
        "ConverseStream": SizedResponses(
            {n: FixedResponse.of(converse_stream_body(n), stream_type) for n in stream_sizes},
            stream_sizes[0],
        ),
        "InvokeModelWithResponseStream": SizedResponses(
            {
                n: FixedResponse.of(
                    anthropic_stream_body(n),
                    stream_type,
                    **{"x-amzn-bedrock-content-type": json_type},
                )
                for n in stream_sizes
            },
            stream_sizes[0],
        ),
        "ListBuckets": FixedResponse.of(LIST_BUCKETS_XML, "application/xml"),
    }


class Bench:
    """Clients, fixed responses and every workload, ready to be timed.

    Args:
        capture: the in-memory trace destination shared by every configuration (MLflow's).
        stream_sizes: events per stream for the streaming workloads.
        with_autolog: include the autolog configuration.
        peers: the OpenTelemetry peers to include where installed (``bench/peers.py``).
    """

    def __init__(
        self,
        capture: TraceCapture,
        stream_sizes: Sequence[int] = (100, 5000),
        *,
        with_autolog: bool = True,
        peers: Sequence[str] = (),
    ) -> None:
        self.capture = capture
        self.clients = make_clients(with_autolog, peers)
        self.peers = {peer.name: peer for peer in self.clients.peers}
        self.responses = fixed_responses(stream_sizes)
        c = self.clients
        bedrock_ops = ("Converse", "InvokeModel", "ConverseStream", "InvokeModelWithResponseStream")
        for client in (c.untraced, c.traced, c.autolog, *(p.client for p in c.peers)):
            if client is None:
                continue
            for op in bedrock_ops:
                install(client, "bedrock-runtime", op, self.responses[op])
        for client in (c.untraced_s3, c.traced_s3):
            install(client, "s3", "ListBuckets", self.responses["ListBuckets"])
        self.workloads = self._workloads(stream_sizes)

    def _workloads(self, stream_sizes: Sequence[int]) -> list[Workload]:
        invoke = {"modelId": CLAUDE, "body": json.dumps(anthropic_request_body())}
        small, large = converse_kwargs(small_messages()), converse_kwargs(large_messages())
        prefix = "BedrockRuntime."
        workloads = [
            Workload("converse_small", "converse, small prompt", "converse", small),
            Workload("converse_large", "converse, ~100 KB prompt", "converse", large),
            Workload("invoke_model", "invoke_model, Anthropic", "invoke_model", invoke, "body"),
        ]
        for size in stream_sizes:
            workloads.append(
                Workload(
                    f"converse_stream_{size}",
                    f"converse_stream, {size:,} events",
                    "converse_stream",
                    small,
                    "stream",
                    size,
                )
            )
            workloads.append(
                Workload(
                    f"invoke_stream_{size}",
                    f"invoke_model_with_response_stream, {size:,} events",
                    "invoke_model_with_response_stream",
                    invoke,
                    "body-stream",
                    size,
                )
            )
        c = self.clients
        for w in workloads:
            w.span_name = prefix + w.method
            w.calls[UNTRACED] = w.call_with(c.untraced)
            w.calls[BEDROCK_TRACE] = w.call_with(c.traced)
            if c.autolog is not None:
                w.calls[AUTOLOG] = w.call_with(c.autolog)
            for peer in c.peers:
                w.calls[peer.name] = w.call_with(peer.client)
        s3 = Workload("s3_list_buckets", "S3 list_buckets, registered session", "list_buckets", {})
        s3.calls[UNTRACED] = s3.call_with(c.untraced_s3)
        s3.calls[BEDROCK_TRACE] = s3.call_with(c.traced_s3)
        workloads.append(s3)
        return workloads

    def workload(self, name: str) -> Workload:
        """The workload called ``name``."""
        for w in self.workloads:
            if w.name == name:
                return w
        raise KeyError(name)

    def prepare(self, workload: Workload) -> None:
        """Make the streaming operations answer with this workload's number of events."""
        if workload.events is not None:
            self.responses["ConverseStream"].size = workload.events
            self.responses["InvokeModelWithResponseStream"].size = workload.events

    @contextlib.contextmanager
    def batch(self, config: str) -> Iterator[None]:
        """Around a batch of calls of ``config``: its peer's instrumentation, then clean up.

        A class-level peer is instrumented for its own batches only; every other batch first
        checks that no class is left wrapped. Afterwards every destination is emptied.

        Raises:
            RuntimeError: a class-level peer is instrumented outside its own batch.
        """
        peer = self.peers.get(config)
        if P.class_patched():
            raise RuntimeError(f"{config}: a class-level peer is still instrumented")
        if peer is not None:
            peer.enter()
        try:
            yield
        finally:
            if peer is not None:
                peer.exit()
            self.clear()

    def clear(self) -> None:
        """Empty every destination: MLflow's capture and each peer's exporter."""
        self.capture.clear()
        for peer in self.peers.values():
            peer.clear()

    def check(self) -> None:
        """Run every workload once per configuration, check its spans, build its floor.

        Each traced configuration must produce exactly one finished span, named as the
        workload says (a peer: as that peer names it, in its own provider), and nothing
        anywhere else; the untraced configuration none (S3: none at all). The floor of each
        workload is built from the span bedrock_trace recorded (see :class:`FloorSpec`) and
        checked the same way.

        Raises:
            RuntimeError: a configuration traced what it should not, or not what it should.
        """
        for w in self.workloads:
            self.prepare(w)
            for config in w.configs:
                spans = self._spans_of(w, config)
                if config == BEDROCK_TRACE and w.span_name is not None:
                    spec = self._floor_spec(w, spans[0])
                    w.calls[FLOOR] = floor_call(spec)
                    w.calls[FLOOR_IN_SITU] = floor_in_situ_call(spec, w, self.clients.untraced)
            for config in (FLOOR, FLOOR_IN_SITU):
                if config in w.calls:
                    self._spans_of(w, config)
        self.clear()

    def _spans_of(self, w: Workload, config: str) -> list[Any]:
        """Run one call of ``config``, check every destination; MLflow's spans of the call."""
        self.clear()
        with self.batch(config):
            w.calls[config]()
            expected = {"mlflow": [], **{name: [] for name in self.peers}}
            if config in self.peers and w.span_name is not None:
                expected[config] = [self.peers[config].span_name(w.method, w.kwargs["modelId"])]
            elif config != UNTRACED and w.span_name is not None:
                expected["mlflow"] = [w.span_name]
            spans = self.capture.spans
            got = {"mlflow": [span.name for span in spans]}
            got.update((name, peer.span_names()) for name, peer in self.peers.items())
        if got != expected:
            raise RuntimeError(f"{w.name}/{config}: expected spans {expected}; got {got}")
        return spans

    def _floor_spec(self, w: Workload, span: Any) -> FloorSpec:
        attributes = span.attributes
        start_keys = (
            SpanAttributeKey.MODEL,
            SpanAttributeKey.MODEL_PROVIDER,
            SpanAttributeKey.MESSAGE_FORMAT,
        )
        spec = FloorSpec(
            span_name=span.name,
            span_type=span.span_type,
            inputs=w.kwargs,
            start_attributes={k: attributes[k] for k in start_keys if k in attributes},
            outputs=span.outputs,
            end_attributes={SpanAttributeKey.CHAT_USAGE: attributes[SpanAttributeKey.CHAT_USAGE]},
            decode_body="body" in w.kwargs,
        )
        if w.events is not None:
            response = getattr(self.clients.untraced, w.method)(**w.kwargs)
            spec.chunked = w.consume != "stream"
            spec.events = list(response["stream" if w.consume == "stream" else "body"])
            if len(spec.events) != w.events:
                raise RuntimeError(f"{w.name}: the stream does not have {w.events} events")
        return spec
