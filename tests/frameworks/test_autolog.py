"""Each framework scenario, enabled by ``bedrock_trace.autolog()`` in the process."""

from __future__ import annotations

import gc
import logging

import mlflow
import pytest

import bedrock_trace
from bedrock_trace.standin import StandIn
from bedrock_trace.testing import TraceCapture, capture_traces, flush

from .checks import check_spans
from .conftest import observe, require
from .scenarios import SCENARIOS, Scenario

APP = "app"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_traced_like_untraced(scenario: Scenario, standin: StandIn) -> None:
    """Under autolog the framework returns what it returns untraced, and every Bedrock call
    it makes is one complete span, nested under the caller's span, with usage and tools."""
    require(scenario)
    untraced, untraced_observed = observe(mlflow.trace(name=APP)(scenario.run))
    standin.reset()

    bedrock_trace.autolog()
    try:
        with capture_traces() as capture:
            traced, observed = observe(mlflow.trace(name=APP)(scenario.run))
            _settle(capture)
    finally:
        bedrock_trace.autolog(disable=True)

    assert traced == untraced
    check_spans(scenario, capture.traces, APP, standin.requests)
    assert [r.getMessage() for r in observed.records if r.levelno >= logging.WARNING] == []
    assert observed.warning_kinds() <= untraced_observed.warning_kinds()


def _settle(capture: TraceCapture) -> None:
    """Let spans of dropped streams end, then require that nothing is left open."""
    gc.collect()
    flush()
    assert capture.open_traces() == 0, "a span was left open"
