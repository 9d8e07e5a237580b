"""aiobotocore: the async twins of the stream wrappers, with the same guarantees.

aiobotocore emits the same events with the same arguments and calls our plain (sync)
handlers, so registration, spans and mappers are shared. Only what the caller reads
asynchronously differs: ``AioEventStream`` (``async for``) and aiobotocore's
``StreamingBody`` (``await body.read()``). This module is imported only when such an object is
seen, so aiobotocore stays optional.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiobotocore.eventstream import AioEventStream
from aiobotocore.response import StreamingBody as AioStreamingBody

from bedrock_trace import _keys as K
from bedrock_trace import _spans
from bedrock_trace._config import TraceConfig
from bedrock_trace._content import prepare
from bedrock_trace._guard import Guard
from bedrock_trace._reaper import reaper
from bedrock_trace._streams import StreamWrapper

_guard_event = Guard("async stream event")
_guard_end = Guard("async stream end")
_guard_final = Guard("async stream finaliser", reraise_in_strict=False)

_CANCELLED = "the caller's task was cancelled while reading the stream"
_CLOSED_EARLY = "the caller closed the body before its end"
_RAW_READ = "the body was read as the raw aiohttp response (async with), which is not recorded"


def _end_on_error(state: Any, error: BaseException) -> None:
    # Cancelling the reading task is the caller stopping, not the model failing.
    if isinstance(error, asyncio.CancelledError):
        state.end(reason=_CANCELLED)
    else:
        state.fail(error)


class TracedAioEventStream(StreamWrapper, AioEventStream):  # type: ignore[misc]
    """An ``AioEventStream`` that records what passes through it (see ``StreamWrapper``)."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._bt_events()

    def __anext__(self) -> AsyncIterator[Any]:
        # aiobotocore's __anext__ is an async generator function; keep the same shape.
        return self._bt_events()

    async def _bt_events(self) -> AsyncIterator[Any]:
        state = self._bt_state
        try:
            on_event = state.on_event
            async for event in self._bt_stream:
                try:
                    on_event(event)
                except BaseException as error:
                    if not _guard_event.contained(error):
                        raise
                yield event
        except GeneratorExit:
            with _guard_final:
                state.end_later("the caller stopped reading the stream before its end")
            raise
        except BaseException as error:
            with _guard_end:
                _end_on_error(state, error)
            raise
        with _guard_end:
            state.end()

    async def get_initial_response(self) -> Any:
        return await self._bt_stream.get_initial_response()

    async def __aenter__(self) -> TracedAioEventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class BodyState:
    """An invoke_model body read asynchronously: the bytes so far, and its span."""

    __slots__ = (
        "__weakref__",
        "chunks",
        "config",
        "ended",
        "expected",
        "finish",
        "received",
        "span",
    )

    def __init__(
        self,
        span: Any,
        config: TraceConfig,
        finish: Callable[[bytes, BaseException | None], Any],
        expected: int | None = None,
    ) -> None:
        self.span = span
        self.config = config
        self.finish = finish
        self.chunks: list[bytes] = []
        self.ended = False
        #: the Content-Length of the body, when announced: reading that much is the end
        self.expected = expected
        self.received = 0
        reaper.track(self)

    def end(
        self,
        *,
        error: BaseException | None = None,
        reason: str | None = None,
        end_time_ns: int | None = None,
    ) -> None:
        if self.ended:
            return
        self.ended = True
        outputs: Any = None
        attributes: dict[str, Any] = {}
        try:
            finished = self.finish(b"".join(self.chunks), error)
            attributes = dict(finished.attributes)
            if reason is not None or error is not None:
                attributes[K.INCOMPLETE] = True
                attributes[K.END_REASON] = reason or "reading the body failed"
            outputs = prepare(self.config, "outputs", finished.outputs, attributes)
        finally:
            _spans.end(
                self.span,
                status="OK" if error is None else "ERROR",
                outputs=outputs,
                attributes=attributes,
                end_time_ns=end_time_ns,
            )

    def end_later(self, reason: str) -> None:
        if not self.ended:
            reaper.submit(lambda end_time_ns: self.end(reason=reason, end_time_ns=end_time_ns))


class TracedAioStreamingBody(AioStreamingBody):  # type: ignore[misc]
    """aiobotocore's ``StreamingBody`` (a proxy), recording the bytes the caller reads.

    It proxies the body aiobotocore created, so every read goes through that body's own
    ``read`` (and its content-length check); the span ends when the body is read to its end,
    fails, is closed, or is dropped.
    """

    def __init__(self, body: Any, state: BodyState) -> None:
        super().__init__(body, None)
        self._self_bt_state = state

    async def read(self, amt: int | None = None) -> bytes:
        state = self._self_bt_state
        try:
            chunk: bytes = await self.__wrapped__.read(amt)
        except BaseException as error:
            with _guard_end:
                _end_on_error(state, error)
            raise
        with _guard_end:
            if chunk:
                state.chunks.append(chunk)
                state.received += len(chunk)
            # read() / read(-1) read everything; an empty chunk for a positive size is the end,
            # and so is the last byte of an announced length (read(content_length) is common).
            whole = state.expected is not None and state.received >= state.expected
            if amt is None or amt < 0 or (not chunk and amt > 0) or whole:
                state.end()
        return chunk

    async def readinto(self, buffer: bytearray) -> int:
        chunk = await self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        try:
            with _guard_end:
                self._self_bt_state.end(reason=_CLOSED_EARLY)
        finally:
            self.__wrapped__.close()

    async def __aexit__(self, *exc_info: Any) -> Any:
        # ``async with body as raw`` hands the caller aiobotocore's raw aiohttp response
        # (as untraced); reads through it bypass this wrapper and cannot be recorded.
        with _guard_end:
            state = self._self_bt_state
            state.end(reason=_RAW_READ if not state.chunks else _CLOSED_EARLY)
        return await self.__wrapped__.__aexit__(*exc_info)

    def tell(self) -> int:
        return int(self.__wrapped__.tell())

    def __del__(self) -> None:
        try:
            state = object.__getattribute__(self, "_self_bt_state")
        except AttributeError:
            return
        if not state.ended:
            with _guard_final:
                state.end_later("the body was dropped before it was read to its end")
