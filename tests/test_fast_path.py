"""The fast path into MLflow stores exactly what MLflow's public span API stores.

Every scenario of tests/stored_traces.py runs twice against the stand-in, once through MLflow's
public API (``BEDROCK_TRACE_MLFLOW_FAST_PATH=0``) and once through the fast path, and the traces
are compared span by span: name, parent, type, status, every attribute's stored JSON text in
the order MLflow keeps them, every event, every attachment.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pytest

from bedrock_trace import _fast_path
from tests.stored_traces import CASES, run_case


def _run(
    monkeypatch: pytest.MonkeyPatch, fast: bool, case: str, span_processors: Any = None
) -> list[list[dict[str, Any]]]:
    monkeypatch.setenv(_fast_path.ENV_SWITCH, "1" if fast else "0")
    _fast_path.reset()
    try:
        assert (_fast_path.path() is not None) is fast
        return run_case(case, span_processors)
    finally:
        monkeypatch.delenv(_fast_path.ENV_SWITCH)
        _fast_path.reset()


@pytest.mark.parametrize("case", list(CASES))
def test_the_fast_path_stores_what_the_public_api_stores(monkeypatch, case):
    public = _run(monkeypatch, False, case)
    fast = _run(monkeypatch, True, case)
    assert public, "the scenario made no trace"
    assert all(public), "a trace without spans"
    assert fast == public


def test_the_fast_path_is_used_on_every_supported_mlflow_tracing():
    """Both ends of the supported range (CI runs the oldest and the newest) take it."""
    _fast_path.reset()
    assert _fast_path.path() is not None, mlflow.__version__


def test_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv(_fast_path.ENV_SWITCH, "0")
    _fast_path.reset()
    try:
        assert _fast_path.path() is None
    finally:
        monkeypatch.delenv(_fast_path.ENV_SWITCH)
        _fast_path.reset()


def _mark(span):
    """A user's span processor: reads what bedrock_trace wrote, adds an attribute."""
    span.set_attribute("user.saw_outputs", span.outputs is not None)
    span.set_attribute("user.status", str(span.status.status_code))


def _broken(span):
    raise RuntimeError("a user's span processor fails")


@pytest.mark.parametrize("case", ["demo", "errors"])
def test_user_span_processors_see_and_store_the_same(monkeypatch, case):
    """Processors configured with mlflow.tracing.configure run where LiveSpan.end runs them:
    after the outputs and status are set, before the span ends; one that raises changes
    nothing else."""
    public = _run(monkeypatch, False, case, [_broken, _mark])
    fast = _run(monkeypatch, True, case, [_broken, _mark])
    marks = [dict(span["attributes"]).get("user.saw_outputs") for trace in fast for span in trace]
    assert marks
    assert all(mark is not None for mark in marks)  # every span went through the processors
    assert fast == public
