"""A loopback stand-in for an MLflow tracking server's trace endpoints, counting stored spans.

It answers what ``mlflow-tracing`` sends when it exports a trace to an ``http://`` tracking
URI: ``GET /version`` (MLflow checks the server can take spans), ``POST /v1/traces`` (the spans,
as an OpenTelemetry ``ExportTraceServiceRequest``) and the REST calls that start and finish the
trace (echoed back). Only what arrives through the span endpoint counts as stored.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

SERVER_VERSION = b"3.17.0"


class MlflowSink:
    """The span names received, in order, and a lock guarding them.

    Args:
        stall: when given, every request is held until this event is set (or ``max_stall``
            seconds pass) and then answered 503: a tracking server that hangs, then fails.
    """

    def __init__(self, stall: threading.Event | None = None, max_stall: float = 20.0) -> None:
        self.span_names: list[str] = []
        self.lock = threading.Lock()
        self.stall = stall
        self.max_stall = max_stall
        self.received = 0  # requests that arrived
        self.answered = 0  # requests answered
        handler = type("Handler", (_Handler,), {"sink": self})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stored(self, name: str) -> int:
        """How many spans named ``name`` were received."""
        with self.lock:
            return self.span_names.count(name)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _Handler(http.server.BaseHTTPRequestHandler):
    sink: MlflowSink

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _reply(self, body: bytes, content_type: str = "application/json") -> None:
        sink = self.sink
        with sink.lock:
            sink.received += 1
        status = 200
        if sink.stall is not None:
            sink.stall.wait(sink.max_stall)
            status, body, content_type = 503, b"{}", "application/json"
        with sink.lock:
            sink.answered += 1
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._reply(SERVER_VERSION if self.path.startswith("/version") else b"{}", "text/plain")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if not self.path.startswith("/v1/traces"):
            self._reply(_echo_trace_info(body))
            return
        if self.sink.stall is not None:
            self._reply(b"")
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        names = [
            span.name
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]
        with self.sink.lock:
            self.sink.span_names.extend(names)
        self._reply(ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")


def _echo_trace_info(body: bytes) -> bytes:
    """Start-trace calls get their trace info back, saying the spans were stored already."""
    try:
        request = json.loads(body)
        info = request["trace"]["trace_info"]
    except (ValueError, KeyError, TypeError):
        return b"{}"
    info.setdefault("tags", {})["mlflow.trace.spansLocation"] = "TRACKING_STORE"
    return json.dumps({"trace": {"trace_info": info}}).encode()


@contextmanager
def mlflow_sink(stall: threading.Event | None = None) -> Iterator[MlflowSink]:
    sink = MlflowSink(stall)
    try:
        yield sink
    finally:
        sink.close()
