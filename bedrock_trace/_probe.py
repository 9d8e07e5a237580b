"""A one-time check that an ``http(s)://`` MLflow tracking server answers.

MLflow exports traces in the background. When the tracking server does not answer, it retries
each export for minutes, also at interpreter exit, so a short script that traced a single call
seems to hang for minutes before it exits, and no trace is saved. The first traced call per
tracking URI starts one daemon thread that asks the server's ``/health`` with a short timeout;
if nothing answers, one WARNING says so and what to do. The traced call never waits for it,
and no error of the check reaches it.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request

import mlflow

from bedrock_trace._guard import Guard, logger

TIMEOUT_S = 3.0

_guard = Guard("tracking server check", reraise_in_strict=False)
_lock = threading.Lock()
_seen: set[str] = set()  # tracking URIs checked, being checked, or never to check
_threads: list[threading.Thread] = []


def check_tracking_server() -> None:
    """Start the check of the current tracking URI, once per URI (cheap after the first)."""
    with _guard:
        _check_once()


def _check_once() -> None:
    uri = mlflow.get_tracking_uri()
    if uri in _seen:
        return
    with _lock:
        if uri in _seen:
            return
        _seen.add(uri)
    if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
        return
    thread = threading.Thread(
        target=_check, args=(uri,), name="bedrock-trace-server-check", daemon=True
    )
    with _lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
        _threads.append(thread)
    thread.start()


def ignore(uri: str) -> None:
    """Never check ``uri`` (a placeholder that is never contacted, as in ``capture_traces``)."""
    with _lock:
        _seen.add(uri)


def wait(timeout: float = TIMEOUT_S + 2) -> None:
    """Wait for the checks in flight to finish (tests)."""
    with _lock:
        threads = list(_threads)
    for thread in threads:
        thread.join(timeout)


def _check(uri: str) -> None:
    with _guard:
        reason = unanswered(uri)
        if reason is not None:
            logger.warning(
                "bedrock_trace: the MLflow tracking server at %s does not answer (%s). Traces "
                "are not saved, and MLflow retries each export for minutes, also while the "
                "program exits. Start the server (mlflow server --host 127.0.0.1 --port 5000) "
                'or record to a local store: mlflow.set_tracking_uri("sqlite:///mlflow.db") '
                "(needs full mlflow: pip install mlflow).",
                _without_credentials(uri),
                reason,
            )


def unanswered(uri: str, timeout: float = TIMEOUT_S) -> str | None:
    """Why the server at ``uri`` does not answer, or None when it answers at all.

    Any HTTP response counts as an answer (a server behind authentication answers 401).
    A URI this check cannot handle (credentials in it, say) counts as answered: no warning.
    """
    parts = urllib.parse.urlsplit(uri)
    if parts.username or parts.password or not parts.hostname:
        return None
    url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/health", "", ""))
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as error:
        return str(error.reason)
    except (OSError, ValueError) as error:  # timeouts, resets, odd ports
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _without_credentials(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
