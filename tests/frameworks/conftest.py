"""Fixtures for the agent frameworks, run for real against the stand-in (``tox -e frameworks``).

Each framework is built the default way: credentials, region and endpoint come from the
environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``), so the framework's own ``boto3.Session()`` reaches the
stand-in and no test touches a framework's internals.

Outside the frameworks environment the frameworks are not installed and every test here is
reported as skipped; with ``BEDROCK_TRACE_REQUIRE_FRAMEWORKS=1`` (set by ``tox -e frameworks``
and ``.ci/run``) a missing framework is a failure instead.

The parent ``tests/conftest.py`` applies too: the machine's AWS configuration is kept out, and
any internal error of ``bedrock_trace`` fails the test (strict guard).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import bedrock_trace
from bedrock_trace.standin import StandIn

from .scenarios import Scenario, standin_rules

#: botocore's client-plugin variable, which ``autolog()`` sets.
PLUGINS_VAR = "BOTOCORE_EXPERIMENTAL__PLUGINS"
# MLflow's usage telemetry would try to reach the internet; these tests stay on loopback.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

REQUIRED = os.environ.get("BEDROCK_TRACE_REQUIRE_FRAMEWORKS") == "1"

#: The Python module each framework is imported as.
MODULES = {
    "langchain": "langchain_aws",
    "strands": "strands",
    "pydantic_ai": "pydantic_ai",
    "llama_index": "llama_index.llms.bedrock_converse",
}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def selected(framework: str) -> bool:
    """``BEDROCK_TRACE_FRAMEWORKS`` (comma-separated) limits the run to some frameworks."""
    names = os.environ.get("BEDROCK_TRACE_FRAMEWORKS", "").replace(" ", "")
    return not names or framework in names.split(",")


def require(scenario: Scenario) -> None:
    """Skip ``scenario`` if its framework is not installed (fail when they are required)."""
    if not selected(scenario.framework):
        pytest.skip(f"{scenario.framework} not in BEDROCK_TRACE_FRAMEWORKS")
    missing = [MODULES[scenario.framework]] if not installed(MODULES[scenario.framework]) else []
    if missing and REQUIRED:
        pytest.fail(f"BEDROCK_TRACE_REQUIRE_FRAMEWORKS=1 but {', '.join(missing)} not installed")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (tox -e frameworks)")


# The suites of the other environments (no framework installed) do not collect this folder.
if not REQUIRED and not any(installed(module) for module in MODULES.values()):
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    """The stand-in, and the environment a user on AWS has: env credentials, region, endpoint."""
    with StandIn(standin_rules()) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        # botocore refuses a bearer token over plain HTTP; no test here uses one.
        monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
        monkeypatch.delenv(PLUGINS_VAR, raising=False)
        yield server


@pytest.fixture
def autologged(standin: StandIn) -> Iterator[None]:
    """``bedrock_trace.autolog()`` for the test, switched off after it."""
    bedrock_trace.autolog()
    try:
        yield
    finally:
        bedrock_trace.autolog(disable=True)


class Observed:
    """What a run left behind beyond its result: Python warnings and our log records."""

    def __init__(self) -> None:
        self.warnings: list[warnings.WarningMessage] = []
        self.records: list[logging.LogRecord] = []

    def warning_kinds(self) -> set[tuple[str, str]]:
        return {(w.category.__name__, str(w.message)) for w in self.warnings}


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self._into = into

    def emit(self, record: logging.LogRecord) -> None:
        self._into.append(record)


def observe(run: Callable[[], Any]) -> tuple[Any, Observed]:
    """Run ``run`` recording every Python warning and every ``bedrock_trace`` log record."""
    observed = Observed()
    logger = logging.getLogger("bedrock_trace")
    handler = _Collect(observed.records)
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run()
    finally:
        logger.removeHandler(handler)
    observed.warnings = list(caught)
    return result, observed
