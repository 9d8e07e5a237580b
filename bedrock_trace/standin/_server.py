"""The HTTP server: :class:`StandIn`, its handler, request records and the rule matching."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, cast

import attrs

from bedrock_trace._eventstream import exception_message
from bedrock_trace.standin import _agents, _flows, _knowledge, _runtime
from bedrock_trace.standin._answer import _answer
from bedrock_trace.standin._exchange import _Exchange, _Response
from bedrock_trace.standin._request import _body_targets, _View, _view_of
from bedrock_trace.standin._routes import _STREAMING, OPERATIONS, _Route, _route, _snake_operation
from bedrock_trace.standin._scenario import (
    RecordedRequest,
    Rule,
    Scenario,
    ScenarioLike,
    ServiceError,
    _to_rules,
    _to_scenario,
)
from bedrock_trace.standin._wire import (
    _AGENT_ERROR_STATUS,
    _ERROR_TYPE_SUFFIX,
    _EVENTSTREAM,
    _JSON,
    _MALFORMED,
    _SECRET_HEADERS,
    _json_bytes,
)

_log = logging.getLogger("bedrock_trace.standin")

#: Each operation's answerer.
_ANSWERERS: Final[Mapping[str, Callable[[_Exchange], _Response]]] = {
    **dict.fromkeys(OPERATIONS, _runtime._respond),
    "invoke_agent": _agents._respond,
    "invoke_inline_agent": _agents._respond,
    "retrieve": _knowledge._respond,
    "retrieve_and_generate": _knowledge._respond,
    "retrieve_and_generate_stream": _knowledge._respond,
    "rerank": _knowledge._respond,
    "invoke_flow": _flows._respond,
}


@attrs.frozen
class _Decision:
    rule_index: int | None
    rule: Rule | None
    throttled: bool


class _Server(ThreadingHTTPServer):
    """The HTTP server, with a reference back to its :class:`StandIn`."""

    daemon_threads = True
    standin: StandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client may drop a keep-alive connection abruptly (a reset when it closes with
        # unread bytes, e.g. a stream it stopped reading): that is the client leaving, not an
        # error of the stand-in.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            _log.debug("Bedrock stand-in: %s closed the connection abruptly", client_address)
            return
        # socketserver would print to stderr; an unexpected error is a bug worth a traceback.
        _log.exception("Bedrock stand-in: error while handling a request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1, so it serves requests until the client closes it."""

    protocol_version = "HTTP/1.1"

    connection_number = 0

    @property
    def _standin(self) -> StandIn:
        return cast(_Server, self.server).standin

    def setup(self) -> None:
        super().setup()
        # Stream events are small writes; without this, Nagle's algorithm could hold them back
        # and blur the per-chunk delays a test measures.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection_number = self._standin._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._standin._untrack(self.connection)

    def version_string(self) -> str:
        """The ``Server`` header: says what answered, without the Python version."""
        return "bedrock-trace-standin"

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s - %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        """Answer one request."""
        standin = self._standin
        standin._answering(self.connection, True)
        try:
            standin._respond(self)
        except OSError as exc:
            # The client went away (or we dropped it on purpose): nothing left to answer.
            _log.debug("Bedrock stand-in: connection ended: %s", exc)
            self.close_connection = True
        finally:
            standin._answering(self.connection, False)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

    def read_body(self) -> bytes:
        """The request body, by Content-Length or chunked transfer encoding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_head(self, status: int, headers: Mapping[str, str]) -> None:
        """Status line and headers (plus Date and Server)."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def send_json(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """A complete response with a Content-Length body."""
        self.send_head(status, {**headers, "Content-Length": str(len(body))})
        self.wfile.write(body)

    def send_chunk(self, data: bytes) -> None:
        """One chunk of a chunked body, written at once (one event-stream message)."""
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")

    def end_chunks(self) -> None:
        """The last chunk: the body is complete and the connection can be reused."""
        self.wfile.write(b"0\r\n\r\n")

    def drop(self) -> None:
        """Close the connection abruptly, mid-response."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # already gone
            self.connection.shutdown(socket.SHUT_RDWR)


class StandIn:
    """A local Bedrock Runtime endpoint answering from a :class:`Scenario`.

    Start it with ``with StandIn(...) as server:`` or :meth:`start`/:meth:`stop`; point a
    client at :attr:`endpoint_url`. ``port=0`` picks a free port. Requests received are in
    :attr:`requests`. Rules' ``times`` and ``throttle`` counters belong to the server and
    start afresh with :meth:`reset`.
    """

    def __init__(
        self, scenario: ScenarioLike = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._scenario = _to_scenario(scenario)
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._answered_all = threading.Condition(self._lock)
        self._answered = [0] * len(self._scenario.rules)
        self._throttled = [0] * len(self._scenario.rules)
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._busy: set[socket.socket] = set()
        self._connection_count = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> StandIn:
        """Bind and serve in a background thread; returns self. ``OSError`` if the port is taken."""
        if self._server is not None:
            raise RuntimeError("the stand-in is already running")
        self._stopping.clear()
        server = _Server((self._host, self._port), _Handler, bind_and_activate=True)
        server.standin = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"bedrock-standin-{self.port}",
            daemon=True,
        )
        self._thread.start()
        _log.info("Bedrock stand-in listening on %s", self.endpoint_url)
        return self

    #: Seconds :meth:`stop` waits for replies being written (a client that stopped reading can
    #: hold a write); scripted delays do not count, :meth:`stop` interrupts them.
    stop_grace = 5.0

    def stop(self) -> None:
        """Stop serving and close every connection, idle keep-alive ones included.

        A reply already being written is finished first (within :attr:`stop_grace`), so a
        client may read a body after the stand-in stopped, as it could from Bedrock; a scripted
        delay is cut short and that request gets no answer.
        """
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            self._answered_all.wait_for(lambda: not self._busy, self.stop_grace)
            connections = list(self._connections)
        for connection in connections:
            # Handler threads waiting for the next request on a kept-alive connection wake up
            # with end-of-file and exit. OSError: the client closed it already.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    @property
    def host(self) -> str:
        """The address listened on."""
        return self._host

    @property
    def port(self) -> int:
        """The port listened on (the one picked, once started with port 0)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._port

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``, for ``client(..., endpoint_url=...)``."""
        if self._server is None:
            raise RuntimeError("the stand-in is not running; start() it first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def environ(self) -> dict[str, str]:
        """Environment variables that point boto3 at the stand-in, with dummy credentials.

        ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` and ``AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME``
        affect only bedrock-runtime and bedrock-agent-runtime clients.
        """
        return {
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.endpoint_url,
            "AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "AKIAFAKESTANDIN",
            "AWS_SECRET_ACCESS_KEY": "fake-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    # --- scenario and records ---

    @property
    def scenario(self) -> Scenario:
        """The rules in use."""
        return self._scenario

    def add(self, *rules: Rule | Mapping[str, Any]) -> None:
        """Append rules to the scenario (they are tried after the existing ones)."""
        added = _to_rules(rules)
        with self._lock:
            self._scenario = Scenario(self._scenario.rules + added)
            self._answered += [0] * len(added)
            self._throttled += [0] * len(added)

    def reset(self, scenario: ScenarioLike = None) -> None:
        """Forget the requests and the rules' counters; with a scenario, use it from now on."""
        new = _to_scenario(scenario) if scenario is not None else self._scenario
        with self._lock:
            self._scenario = new
            self._answered = [0] * len(new.rules)
            self._throttled = [0] * len(new.rules)
            self._requests.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, operation: str) -> list[RecordedRequest]:
        """The requests received for one operation (snake_case or API name)."""
        name = _snake_operation(operation)
        return [r for r in self.requests if r.operation == name]

    # --- serving (called from handler threads) ---

    def _track(self, connection: socket.socket) -> int:
        with self._lock:
            self._connections.add(connection)
            self._connection_count += 1
            return self._connection_count

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _answering(self, connection: socket.socket, busy: bool) -> None:
        with self._lock:
            if busy:
                self._busy.add(connection)
            else:
                self._busy.discard(connection)
                self._answered_all.notify_all()

    def _decide(
        self, operation: str, model_id: str | None, resource_id: str | None, view: _View
    ) -> _Decision:
        with self._lock:
            for index, rule in enumerate(self._scenario.rules):
                if not _matches(rule, operation, model_id, resource_id, view):
                    continue
                if rule.times is not None and self._answered[index] >= rule.times:
                    continue
                if self._throttled[index] < rule.throttle:
                    self._throttled[index] += 1
                    return _Decision(index, rule, throttled=True)
                self._answered[index] += 1
                return _Decision(index, rule, throttled=False)
        return _Decision(None, None, throttled=False)

    def _record(self, request: _Request, rule: int | None, outcome: str, status: int) -> None:
        route = request.route
        recorded = RecordedRequest(
            operation=route.operation if route else "unknown",
            model_id=request.model_id,
            guardrail_id=route.guardrail_id if route else None,
            guardrail_version=route.guardrail_version if route else None,
            body=request.body,
            raw_body=request.raw_body,
            headers=request.headers,
            path=request.path,
            user_text=request.view.user_text,
            rule=rule,
            outcome=outcome,
            status=status,
            request_id=request.request_id,
            connection=request.connection,
            resource_id=request.resource_id,
        )
        with self._lock:
            self._requests.append(recorded)
        _log.info(
            "%s %s -> %s %s (%s)",
            recorded.operation,
            recorded.resource_id or recorded.model_id or recorded.guardrail_id or recorded.path,
            status,
            outcome,
            "default" if rule is None else f"rule {rule}",
        )

    def _sleep(self, seconds: float) -> None:
        # Interrupted by stop(), so that a slow scenario never holds up shutdown.
        if seconds > 0 and self._stopping.wait(seconds):
            raise ConnectionAbortedError("the stand-in is stopping")

    def _respond(self, handler: _Handler) -> None:
        request = _Request.read(handler)
        route = request.route
        if route is None:
            self._record(request, None, "invalid", 404)
            where = f"{handler.command} {request.path.split('?', 1)[0]}"
            error = ServiceError("UnknownOperationException", f"No operation at {where}", 404)
            _send_error(handler, request, error)
            return
        if request.raw_body and request.body is None:
            self._record(request, None, "invalid", 400)
            _send_error(handler, request, ServiceError("ValidationException", _MALFORMED))
            return

        # A guardrail id stands in for the model id in rules' ``model`` condition.
        decision = self._decide(
            route.operation, request.model_id, request.resource_id, request.view
        )
        rule, index = decision.rule, decision.rule_index
        slow = rule.slow if rule else None
        self._sleep(slow.before_headers if slow else 0.0)
        if decision.throttled:
            self._record(request, index, "throttle", 429)
            _send_error(handler, request, ServiceError("ThrottlingException"))
            return
        if rule is not None and rule.error is not None:
            self._record(request, index, "error", _status(rule.error, route.service))
            _send_error(handler, request, rule.error)
            return
        if rule is not None and rule.drop is not None and route.operation not in _STREAMING:
            self._record(request, index, "drop", 0)
            handler.drop()
            return
        elapsed = int((time.monotonic() - request.started) * 1000)
        reply = rule.reply if rule else None
        exchange = _Exchange(
            route=route,
            body=request.body,
            view=request.view,
            answer=_answer(reply, request.view, elapsed, slow),
            reply=reply,
            request_id=request.request_id,
            received=request.received,
            per_event=slow.per_chunk if slow else 0.0,
        )
        try:
            response = _ANSWERERS[route.operation](exchange)
        except (ValueError, TypeError) as exc:
            # A reply that cannot be encoded (a tool input that is not JSON-serializable, say):
            # the client gets an InternalServerException naming it rather than a hung call.
            _log.warning("Bedrock stand-in: cannot answer %s: %s", route.operation, exc)
            self._record(request, index, "invalid", 500)
            error = ServiceError("InternalServerException", f"Bedrock stand-in: {exc}")
            _send_error(handler, request, error)
            return
        headers = {**response.headers, "x-amzn-requestid": request.request_id}
        if response.messages is None:
            self._record(request, index, "reply", 200)
            handler.send_json(200, headers, response.document or b"")
            return
        self._stream(handler, request, index, rule, headers, response.messages)

    def _stream(
        self,
        handler: _Handler,
        request: _Request,
        index: int | None,
        rule: Rule | None,
        headers: Mapping[str, str],
        messages: list[bytes],
    ) -> None:
        """Send event-stream messages as chunks, one write each, with the rule's faults."""
        headers = {**headers, "Content-Type": _EVENTSTREAM, "Transfer-Encoding": "chunked"}
        per_chunk = rule.slow.per_chunk if rule and rule.slow else 0.0
        stream_error = rule.stream_error if rule else None
        drop = rule.drop if rule else None
        if stream_error is not None:
            messages = messages[: stream_error.after]
            messages.append(exception_message(stream_error.event_type, stream_error.text))
            outcome = "stream_error"
        elif drop is not None:
            messages = messages[: drop.after]
            outcome = "drop"
        else:
            outcome = "reply"
        self._record(request, index, outcome, 200)
        handler.send_head(200, headers)
        for message in messages:
            self._sleep(per_chunk)
            handler.send_chunk(message)
        if drop is not None:
            handler.drop()
        else:
            handler.end_chunks()


@attrs.frozen
class _Request:
    """A request as read off the connection."""

    route: _Route | None
    path: str
    raw_body: bytes
    body: Any
    headers: dict[str, str]
    view: _View
    request_id: str
    connection: int
    started: float
    received: datetime
    #: The model id a rule's ``model`` tests (a guardrail id for apply_guardrail).
    model_id: str | None
    #: The agent, knowledge base or flow a rule's ``agent`` tests.
    resource_id: str | None

    @classmethod
    def read(cls, handler: _Handler) -> _Request:
        started = time.monotonic()
        received = datetime.now(timezone.utc)
        raw = handler.read_body()
        route = _route(handler.command, handler.path)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        model, resource = _body_targets(route.operation, body) if route else (None, None)
        return cls(
            route=route,
            path=handler.path,
            raw_body=raw,
            body=body,
            headers={
                name.lower(): value
                for name, value in handler.headers.items()
                if name.lower() not in _SECRET_HEADERS
            },
            view=_view_of(route.operation, body) if route else _View(),
            request_id=str(uuid.uuid4()),
            connection=handler.connection_number,
            started=started,
            received=received,
            model_id=(route.model_id or route.guardrail_id or model) if route else None,
            resource_id=(route.resource_id or resource) if route else None,
        )


def _matches(
    rule: Rule, operation: str, model_id: str | None, resource_id: str | None, view: _View
) -> bool:
    if rule.operation is not None and rule.operation != operation:
        return False
    if rule.model is not None and rule.model not in (model_id or ""):
        return False
    if rule.agent is not None and rule.agent not in (resource_id or ""):
        return False
    if rule.contains is not None and rule.contains.lower() not in view.user_text.lower():
        return False
    return rule.tool_result is None or rule.tool_result == bool(view.tool_results)


def _status(error: ServiceError, service: str) -> int:
    """The HTTP status of an error: its own, else the service's for the code."""
    if error.status is not None or service != "bedrock-agent-runtime":
        return error.http_status
    return _AGENT_ERROR_STATUS.get(error.code, 400)


def _send_error(handler: _Handler, request: _Request, error: ServiceError) -> None:
    """An AWS REST-JSON error: status, ``x-amzn-errortype`` and a ``message`` body."""
    headers = {
        "Content-Type": _JSON,
        "x-amzn-requestid": request.request_id,
        "x-amzn-errortype": f"{error.code}:{_ERROR_TYPE_SUFFIX}",
    }
    service = request.route.service if request.route else "bedrock-runtime"
    handler.send_json(_status(error, service), headers, _json_bytes({"message": error.text}))
