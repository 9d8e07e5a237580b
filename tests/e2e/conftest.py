"""End-to-end fixtures: a real ``mlflow server`` on loopback, MLflow pointed at it, and a traced
boto3 client talking to the Bedrock stand-in.

Each test module marks all its tests skipped when what it needs is not installed
(``FULL_MLFLOW``, ``OTLP_HTTP_EXPORTER`` below): the tracking server needs full ``mlflow``
(SQLAlchemy, ``mlflow.server``), the OTLP tests need ``opentelemetry-exporter-otlp-proto-http``.
With ``mlflow-tracing`` alone every test here is collected and reported as skipped (exit status
0, even for ``pytest tests/e2e`` alone). This file and the test modules import nothing at module
level beyond what ``mlflow-tracing`` brings.

The parent ``tests/conftest.py`` applies here too: offline AWS settings and the strict guard
that turns any internal error of ``bedrock_trace`` into a test failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from bedrock_trace.demo import DEMO_SCENARIO
from bedrock_trace.standin import StandIn

from ..conftest import ONE_ATTEMPT


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


#: Full ``mlflow`` (the tracking server and its SQL store), not only ``mlflow-tracing``.
FULL_MLFLOW = _installed("sqlalchemy") and _installed("mlflow.server")
#: The exporter MLflow uses for ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf``.
OTLP_HTTP_EXPORTER = _installed("opentelemetry.exporter.otlp.proto.http.trace_exporter")

SERVER_START_TIMEOUT = 60.0
SERVER_STOP_TIMEOUT = 15.0
# MLflow's process-wide settings the e2e fixtures change and put back.
_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


# --- the tracking server --------------------------------------------------------------------


@dataclass
class MlflowServer:
    """A ``mlflow server`` subprocess with a SQLite backend store, all under ``root``."""

    url: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 80) -> str:
        """The end of the server's combined stdout/stderr."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stored_bytes(self) -> bytes:
        """Everything the server has written: the SQLite database (with its journal), the
        artifact root and its log."""
        files = sorted(path for path in self.root.rglob("*") if path.is_file())
        return b"".join(path.read_bytes() for path in files)

    def stop(self) -> None:
        """End the server and the processes it started (its own process group)."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(SERVER_STOP_TIMEOUT)


def _mlflow_command() -> list[str]:
    """The ``mlflow`` CLI of the running interpreter's environment."""
    executable = Path(sys.executable).parent / "mlflow"
    if executable.exists():
        return [str(executable)]
    return [sys.executable, "-m", "mlflow"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    # No proxies: the server is on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# Runs the server command after asking Linux to send it SIGTERM when the test process dies,
# so a killed test run (timeout, a second Ctrl-C) does not leave the server running.
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG, kept across exec
except Exception:
    pass
os.execv(sys.argv[1], sys.argv[1:])
"""


def _launch(root: Path) -> MlflowServer:
    port = _free_port()
    log = root / f"server-{port}.log"
    env = dict(os.environ)
    for name in _MLFLOW_ENV:
        env.pop(name, None)
    # The job runner (huey consumers for scorers) is not needed and slows start-up.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    command = [
        *_mlflow_command(),
        "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--default-artifact-root", str(root / "art"),
    ]  # fmt: skip
    if sys.platform == "linux":
        command = [sys.executable, "-c", _DIE_WITH_PARENT, *command]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: stop() ends the workers too
        )
    return MlflowServer(url=f"http://127.0.0.1:{port}", root=root, log=log, process=process)


def start_mlflow_server(root: Path, timeout: float = SERVER_START_TIMEOUT) -> MlflowServer:
    """Start ``mlflow server`` and wait until ``/health`` answers; fail with its log if not."""
    deadline = time.monotonic() + timeout
    for _attempt in range(3):
        server = _launch(root)
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                break
            if _healthy(server.url):
                return server
            time.sleep(0.25)
        else:
            server.stop()
            pytest.fail(
                f"mlflow server did not answer {server.url}/health within {timeout:.0f} s:\n"
                f"{server.log_tail()}",
                pytrace=False,
            )
        # It exited. Another process may have taken the port in the meantime: try another.
        if "address already in use" not in server.log_tail().lower():
            break
    pytest.fail(
        f"mlflow server exited with status {server.process.returncode}:\n{server.log_tail()}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server on a free loopback port, for the whole session."""
    if not FULL_MLFLOW:
        pytest.skip("the MLflow tracking server needs full mlflow")
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()


def flush_traces() -> None:
    """Wait until MLflow has sent every finished trace to its destination."""
    import mlflow

    flush = getattr(mlflow, "flush_trace_async_logging", None)
    if flush is not None:
        flush()


@pytest.fixture(scope="module")
def mlflow_experiment(mlflow_server: MlflowServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    """MLflow pointed at the server, with an experiment of the test module's own; MLflow's
    tracking URI, active experiment and tracer provider are restored afterwards."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    name = f"bedrock-trace-e2e.{request.module.__name__.rpartition('.')[2]}"
    # set_tracking_uri and set_experiment also export MLFLOW_TRACKING_URI and
    # MLFLOW_EXPERIMENT_ID; left behind, they would send later tests' traces to this server.
    saved_env = {variable: os.environ.get(variable) for variable in _MLFLOW_ENV}
    saved_uri = tracking_utils._tracking_uri  # None unless someone set one
    try:
        for variable in _MLFLOW_ENV:
            os.environ.pop(variable, None)
        mlflow.set_tracking_uri(mlflow_server.url)
        yield mlflow.set_experiment(name)
    finally:
        with contextlib.suppress(Exception):
            flush_traces()  # a failure here is the test's, reported there
        mlflow.set_tracking_uri(saved_uri)
        for variable, value in saved_env.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value
    # The tracer provider was built for the server; the next trace builds one afresh.
    mlflow.tracing.reset()


# --- the Bedrock side -----------------------------------------------------------------------


@dataclass
class Bedrock:
    """The stand-in and a traced client of it (the parent conftest's fake credentials)."""

    standin: StandIn
    client: Any


@pytest.fixture
def bedrock(session: boto3.Session) -> Iterator[Bedrock]:
    """The Bedrock stand-in with the demo's scenario, and a registered client, one attempt per
    call."""
    with StandIn(scenario=DEMO_SCENARIO) as standin:
        client = session.client(
            "bedrock-runtime", endpoint_url=standin.endpoint_url, config=ONE_ATTEMPT
        )
        yield Bedrock(standin=standin, client=client)
