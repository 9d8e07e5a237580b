"""The one place where this package catches ``Exception``.

Every handler body, stream callback and finaliser of ours runs inside a :class:`Guard`, so an
error of ours never reaches the program being traced: it is logged (a warning the first time a
given error type is seen at a given site, debug after that; the traceback always at debug) and
the traced call goes on as if tracing were not there.

Tests flip the guard into strict mode (``bedrock_trace.testing.strict_guard``): errors of ours
are then re-raised where that is safe and always collected, so a test fails on them instead of
passing over a silently broken span.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

logger = logging.getLogger("bedrock_trace")

_lock = threading.Lock()
_seen: set[tuple[str, type[BaseException]]] = set()


class _StrictState:
    """Strict-mode switch and the errors collected while it is on."""

    __slots__ = ("enabled", "errors")

    def __init__(self) -> None:
        self.enabled = False
        #: where errors are collected; None when nobody is collecting (production)
        self.errors: list[tuple[str, BaseException]] | None = None


strict = _StrictState()


def report(where: str, error: BaseException) -> None:
    """Log an internal error once per (site, type), and collect it in strict mode."""
    key = (where, type(error))
    with _lock:
        first = key not in _seen
        if first:
            _seen.add(key)
        if strict.errors is not None:
            strict.errors.append((where, error))
    if first:
        logger.warning(
            "bedrock_trace: internal error in %s (%s: %s); the traced call is not affected. "
            "Later errors of this kind are logged at DEBUG.",
            where,
            type(error).__name__,
            error,
        )
    logger.debug("bedrock_trace: internal error in %s", where, exc_info=error)


def forget_seen() -> None:
    """Log the next error of every kind at WARNING again (tests of the logging use this)."""
    with _lock:
        _seen.clear()


class Guard:
    """Context manager that contains our own failures.

    Args:
        where: a short name of the site, used in the log line.
        reraise_in_strict: re-raise in strict mode. Off for sites where raising would not reach
            a test anyway (finalisers, the background reaper) or would break the caller's
            iteration in a way a test cannot observe cleanly; those errors are still collected.
        contain_all: contain ``BaseException`` too. Only for our own background thread, where
            nobody could act on a ``SystemExit`` or ``KeyboardInterrupt`` raised by a user's
            hook, and letting it through would end the thread for good.
    """

    __slots__ = ("contain_all", "reraise_in_strict", "where")

    def __init__(
        self, where: str, *, reraise_in_strict: bool = True, contain_all: bool = False
    ) -> None:
        self.where = where
        self.reraise_in_strict = reraise_in_strict
        self.contain_all = contain_all

    def __enter__(self) -> None:
        return None

    def contained(self, error: BaseException) -> bool:
        """What ``with guard:`` does with ``error``: False when it must be re-raised.

        For hot loops, where ``try: ... except BaseException as e: if not guard.contained(e):
        raise`` saves the context manager's two calls.
        """
        return self.__exit__(type(error), error, error.__traceback__)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # KeyboardInterrupt, SystemExit and GeneratorExit are not ours to swallow (except on
        # our own thread, see contain_all).
        if exc is None or not (isinstance(exc, Exception) or self.contain_all):
            return False
        report(self.where, exc)
        return not (strict.enabled and self.reraise_in_strict)
