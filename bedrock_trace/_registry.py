"""``register`` / ``unregister``: which emitter a target has, and what is registered on it."""

from __future__ import annotations

import threading
import weakref
from typing import Any

import boto3
import botocore.client
import botocore.session

from bedrock_trace import _handlers
from bedrock_trace._config import TraceConfig
from bedrock_trace._reaper import reaper

# One Handlers object per emitter we registered on. Keyed weakly: a dropped session or client
# takes its registration with it. Handlers hold no reference back to the emitter.
_registrations: weakref.WeakKeyDictionary[Any, _handlers.Handlers] = weakref.WeakKeyDictionary()
# The subset made by autolog() for clients it saw created: it switches them all at once, and an
# explicit register(client) takes a client out of it.
_autologged: weakref.WeakSet[_handlers.Handlers] = weakref.WeakSet()
_lock = threading.Lock()

_ACCEPTED = "a boto3.Session, a botocore.session.Session, a botocore client, or None"


def _emitter_of(target: Any) -> tuple[Any, bool]:
    """The event emitter of ``target`` and whether ``target`` is a client.

    Raises:
        TypeError: ``target`` is none of the accepted kinds.
    """
    if target is None:
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        target = boto3.DEFAULT_SESSION
    if isinstance(target, boto3.session.Session):
        return target.events, False
    if isinstance(target, botocore.session.Session):
        return target.get_component("event_emitter"), False
    if isinstance(target, botocore.client.BaseClient):
        return target.meta.events, True
    kind = type(target)
    raise TypeError(
        f"bedrock_trace: expected {_ACCEPTED}; got {kind.__module__}.{kind.__qualname__}"
    )


def _attach(emitter: Any, handlers: _handlers.Handlers) -> None:
    for event, method, first, unique_id in _handlers.TABLE:
        register = emitter.register_first if first else emitter.register
        register(event, getattr(handlers, method), unique_id=unique_id)


def _detach(emitter: Any) -> None:
    """Stop ``emitter`` opening spans.

    The ``after-call`` handlers stay: a call already in flight when tracing stops must still end
    its span with its true outcome. They only act on calls whose span was opened (the state is
    in the call's own context), so they cost nothing to other calls, and any registration's
    copy of them ends any call's span (they share one ``unique_id``, DESIGN.md 5.7).
    """
    for event, _method, _first, unique_id in _handlers.TABLE:
        if not event.startswith("after-call"):
            emitter.unregister(event, unique_id=unique_id)


def register_autologged(client: Any, config: TraceConfig) -> bool:
    """Trace ``client`` for ``autolog()``, unless a registration already covers it.

    A client created from a registered session holds that session's handlers (copied with
    the emitter) and keeps them, with the session's config: explicit registrations win.

    Returns:
        False if ``client`` was registered already.
    """
    emitter = client.meta.events
    with _lock:
        if emitter in _registrations:
            return False
        handlers = _registrations[emitter] = _handlers.Handlers(config)
        _autologged.add(handlers)
        # botocore ignores a handler whose unique id the emitter already has: a client that
        # holds its registered session's handlers keeps them, and so the session's config.
        _attach(emitter, handlers)
    reaper.start()
    return True


def switch_autologged(*, active: bool, config: TraceConfig | None = None) -> None:
    """Turn every client autolog() registered on or off, optionally with a new config."""
    with _lock:
        for handlers in list(_autologged):
            handlers.active = active
            if config is not None:
                handlers.config = config


def register(target: Any = None, *, config: TraceConfig | None = None) -> None:
    """Trace the Bedrock Runtime and Bedrock Agents runtime calls of ``target`` as MLflow spans.

    Args:
        target: a ``boto3.Session`` or ``botocore.session.Session`` (covers the clients created
            from it after this call), a botocore client such as
            ``boto3.client("bedrock-runtime")`` (covers that client), or None for boto3's
            default session (the one ``boto3.client(...)`` uses).
        config: what to record. When None: the defaults, overridden by ``BEDROCK_TRACE_*``
            environment variables (:meth:`TraceConfig.from_env`). Registering again with a
            config replaces it; registering never doubles the spans.

    Raises:
        TypeError: ``target`` is not one of the kinds above.
        ValueError: a ``BEDROCK_TRACE_*`` environment variable cannot be understood.
    """
    if config is not None and not isinstance(config, TraceConfig):
        raise TypeError(f"bedrock_trace: config must be a TraceConfig; got {type(config)!r}")
    emitter, is_client = _emitter_of(target)
    reaper.start()
    with _lock:
        handlers = _registrations.get(emitter)
        if handlers is None:
            handlers = _registrations[emitter] = _handlers.Handlers(
                config or TraceConfig.from_env()
            )
            if is_client:
                # The client may hold its session's handlers (copied with the emitter): its
                # own registration takes their place, so one call never gets two spans.
                _detach(emitter)
        elif handlers in _autologged:
            # An explicit registration of a client autolog() registered: it is the user's now,
            # with its own config, and autolog(disable=True) no longer switches it off.
            _autologged.discard(handlers)
            handlers.config = config or TraceConfig.from_env()
            _detach(emitter)  # it may hold its session's handlers rather than autolog's
        elif config is not None:
            handlers.config = config
        handlers.active = True
        _attach(emitter, handlers)


def unregister(target: Any = None) -> None:
    """Stop tracing ``target``; idempotent.

    For a session this includes the clients already created from it. Streams already handed
    to the caller still end their spans.

    Raises:
        TypeError: ``target`` is not one of the kinds :func:`register` accepts.
    """
    if target is None and boto3.DEFAULT_SESSION is None:
        return  # no default session, so nothing registered on it: do not create one here
    emitter, _is_client = _emitter_of(target)
    with _lock:
        handlers = _registrations.get(emitter)
        if handlers is not None:
            handlers.active = False
            _autologged.discard(handlers)  # autolog() never switches it back on
        _detach(emitter)
