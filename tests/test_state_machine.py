"""A state machine over registration, calls and streams: every span ends once, truthfully.

Hypothesis drives register / unregister of a session and of its clients, calls that succeed or
fail, unregister while a call is in flight, and streams read, broken off, resumed, closed or
dropped, in any order. A model predicts which calls are traced and how each span must end; the
checks compare every finished trace with it: one span per traced call and none for the others,
the true status, incomplete exactly when the caller stopped early, and exactly the events read
before the caller stopped. Interpreter exit is covered in ``test_exit.py`` (its own process).
"""

from __future__ import annotations

import gc
import os
from typing import Any

import attrs
from botocore.exceptions import ClientError, EventStreamError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

import bedrock_trace
from bedrock_trace.testing import (
    HttpStub,
    capture_traces,
    converse_response,
    converse_stream_messages,
    exception_message,
    flush,
)

from .conftest import ONE_ATTEMPT, make_session

MODEL = "amazon.nova-lite-v1:0"


@attrs.define
class Client:
    """A client of the session, and how it is registered."""

    client: Any
    http: HttpStub
    copied_session_handlers: bool  # created while the session was registered
    own: bool | None = None  # registered itself (True), unregistered itself (False), neither


@attrs.define
class Expected:
    """What the span of one call must look like once the call (or its stream) is over."""

    traced: bool
    status: str | None = None  # None while the call or its stream is still open
    incomplete: bool = False
    stream_events: int | None = None


@attrs.define
class Stream:
    """A stream handed to the caller, and what the caller did with it."""

    key: str
    stream: Any
    total: int  # events before the end (or before the exception event)
    fails: bool  # ends with an exception event
    read: int = 0
    finished: bool = False


class TracingMachine(RuleBasedStateMachine):
    """Registration, calls and streams in any order, against a model of the spans."""

    clients = Bundle("clients")
    streams = Bundle("streams")

    @initialize()
    def setup(self) -> None:
        self.session = make_session()
        self.session_active = False
        self.capture_context = capture_traces()
        self.capture = self.capture_context.__enter__()
        self.expected: dict[str, Expected] = {}
        self.all_clients: list[Client] = []
        self.all_streams: list[Stream] = []
        self.counter = 0

    def teardown(self) -> None:
        try:
            for item in self.all_clients:
                item.http.__exit__(None, None, None)
            for stream in self.all_streams:  # what the program still holds, dropped at last
                stream.stream = None
                self._stop(stream)
            self.check_spans(final=True)
        finally:
            bedrock_trace.unregister(self.session)
            self.capture_context.__exit__(None, None, None)

    # --- registration ------------------------------------------------------------------

    @rule()
    def register_session(self) -> None:
        bedrock_trace.register(self.session)
        self.session_active = True

    @rule()
    def unregister_session(self) -> None:
        bedrock_trace.unregister(self.session)
        self.session_active = False

    @rule(target=clients)
    def new_client(self) -> Client:
        client = self.session.client("bedrock-runtime", config=ONE_ATTEMPT)
        http = HttpStub(client, keep_requests=False).__enter__()
        item = Client(client, http, copied_session_handlers=self.session_active)
        self.all_clients.append(item)
        return item

    @rule(item=clients)
    def register_client(self, item: Client) -> None:
        bedrock_trace.register(item.client)
        item.own = True

    @rule(item=clients)
    def unregister_client(self, item: Client) -> None:
        bedrock_trace.unregister(item.client)
        item.own = False

    def traced(self, item: Client) -> bool:
        if item.own is not None:
            return item.own
        return item.copied_session_handlers and self.session_active

    # --- calls -------------------------------------------------------------------------

    def _key(self) -> str:
        self.counter += 1
        return f"call-{self.counter}"

    def _messages(self, key: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": [{"text": key}]}]

    @rule(item=clients, fails=st.booleans(), toggle=st.sampled_from([None, "client", "session"]))
    def converse(self, item: Client, fails: bool, toggle: str | None) -> None:
        """A call that succeeds or gets an HTTP error; optionally unregister while in flight."""
        key = self._key()
        expected = self.expected[key] = Expected(traced=self.traced(item))
        if fails:
            item.http.add(
                {"message": "bad"}, status=400, headers={"x-amzn-errortype": "ValidationException"}
            )
        else:
            item.http.add(converse_response(key))
        unique_id = f"toggle-{key}"
        if toggle is not None:

            def unregister_in_flight(**kwargs: Any) -> None:
                if toggle == "client":
                    self.unregister_client(item)
                else:
                    self.unregister_session()

            item.client.meta.events.register(
                "before-send.bedrock-runtime", unregister_in_flight, unique_id=unique_id
            )
        try:
            item.client.converse(modelId=MODEL, messages=self._messages(key))
            assert not fails
        except ClientError:
            assert fails
        finally:
            item.client.meta.events.unregister("before-send.bedrock-runtime", unique_id=unique_id)
        expected.status = "ERROR" if fails else "OK"

    @rule(target=streams, item=clients, fails=st.booleans())
    def open_stream(self, item: Client, fails: bool) -> Stream:
        key = self._key()
        messages = converse_stream_messages(key, pieces=3)
        if fails:
            messages = [*messages[:3], exception_message("modelStreamErrorException", "failed")]
        item.http.add_stream(messages)
        self.expected[key] = Expected(traced=self.traced(item))
        response = item.client.converse_stream(modelId=MODEL, messages=self._messages(key))
        total = 3 if fails else len(messages)
        stream = Stream(key, response["stream"], total, fails)
        self.all_streams.append(stream)
        return stream

    def _stop(self, stream: Stream) -> None:
        """The caller stopped before the end: OK, incomplete, what was read so far."""
        if not stream.finished:
            stream.finished = True
            self._set(stream, "OK", incomplete=True)

    def _set(self, stream: Stream, status: str, *, incomplete: bool) -> None:
        expected = self.expected[stream.key]
        expected.status, expected.incomplete = status, incomplete
        expected.stream_events = stream.read

    def _iterate(self, stream: Stream, limit: int | None) -> None:
        """Read with a for loop, breaking after ``limit`` events (None: to the end)."""
        stopped = False
        try:
            for event in stream.stream:
                assert event
                if not stream.finished:
                    stream.read += 1
                if limit is not None and (limit := limit - 1) == 0:
                    stopped = True
                    break
        except EventStreamError:
            assert stream.fails
            if not stream.finished:
                stream.finished = True
                self._set(stream, "ERROR", incomplete=True)
            return
        if stopped:
            self._stop(stream)
        elif not stream.finished:
            stream.finished = True
            self._set(stream, "ERROR" if stream.fails else "OK", incomplete=stream.fails)

    @rule(stream=streams, count=st.integers(1, 4))
    def read_then_break(self, stream: Stream, count: int) -> None:
        self._iterate(stream, count)

    @rule(stream=streams)
    def read_to_the_end(self, stream: Stream) -> None:
        """Also resumes a stream broken off or closed before."""
        self._iterate(stream, None)

    @rule(stream=streams)
    def close(self, stream: Stream) -> None:
        stream.stream.close()
        self._stop(stream)

    @rule(stream=consumes(streams))
    def drop(self, stream: Stream) -> None:
        stream.stream = None
        gc.collect()
        self._stop(stream)

    # --- checks ------------------------------------------------------------------------

    @precondition(lambda self: hasattr(self, "capture"))
    @invariant()
    def spans_match_the_model(self) -> None:
        self.check_spans(final=False)

    def check_spans(self, *, final: bool) -> None:
        if final:
            gc.collect()  # after each step, the drop rule has collected already
        flush()
        spans: dict[str, list[Any]] = {}
        for span in self.capture.spans:
            key = span.inputs["messages"][0]["content"][0]["text"]
            spans.setdefault(key, []).append(span)
        for key, expected in self.expected.items():
            found = spans.pop(key, [])
            if not expected.traced:
                assert found == [], f"{key} was not to be traced"
                continue
            if expected.status is None and not final:
                assert found == [], f"{key} ended while its stream is open"
                continue
            assert len(found) == 1, f"{key}: {len(found)} spans"
            (span,) = found
            assert span.status.status_code == expected.status, (key, span.attributes)
            attributes = span.attributes
            assert attributes.get("bedrock_trace.incomplete", False) == expected.incomplete, key
            if expected.stream_events is not None:
                assert attributes["bedrock_trace.stream_events"] == expected.stream_events, key
        assert spans == {}, f"spans of no call: {list(spans)}"
        open_streams = sum(
            1 for e in self.expected.values() if e.traced and e.status is None and not final
        )
        assert self.capture.open_traces() == open_streams


def _settings() -> settings:
    return settings(
        max_examples=int(os.environ.get("BEDROCK_TRACE_EXAMPLES", "20")),
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


TracingMachine.TestCase.settings = _settings()
TestTracingMachine = TracingMachine.TestCase
