"""Each framework scenario in a program that never imports ``bedrock_trace``: tracing is
switched on by ``BOTOCORE_EXPERIMENTAL__PLUGINS`` alone, MLflow by its own variables, and the
spans are read back from the MLflow store the program wrote to.

One program runs every scenario (one interpreter start and one store for all, to keep the run
short); each scenario is then checked by a test of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bedrock_trace.standin import RecordedRequest, StandIn

from .checks import bedrock_spans, check_spans, root_of
from .conftest import MODULES, PLUGINS_VAR, REQUIRED, installed, observe, require, selected
from .scenarios import SCENARIOS, Scenario, standin_rules

APP = Path(__file__).with_name("app.py")
EXPERIMENT = "frameworks"
APP_TIMEOUT = 600


@dataclass
class AppRun:
    """What the program printed, the traces it stored, and the requests of each scenario."""

    results: dict[str, Any]
    stderr: str
    traces: list[Any]
    requests: dict[str, list[RecordedRequest]]


@pytest.fixture(scope="module")
def app_run(tmp_path_factory: pytest.TempPathFactory) -> AppRun:
    """Run ``app.py`` once, with every scenario whose framework is installed."""
    if not installed("sqlalchemy") or not installed("mlflow.store.tracking.sqlalchemy_store"):
        message = "MLflow's SQLite store (SQLAlchemy) is not installed (tox -e frameworks)"
        pytest.fail(message) if REQUIRED else pytest.skip(message)
    scenarios = [s for s in SCENARIOS if selected(s.framework) and installed(MODULES[s.framework])]
    if not scenarios:
        pytest.skip("no framework installed (tox -e frameworks)")
    root = tmp_path_factory.mktemp("app")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    with StandIn(standin_rules()) as server:
        env = {
            **os.environ,
            **server.environ(),
            PLUGINS_VAR: "bedrock_trace=bedrock_trace.plugin",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
        }
        env.pop("AWS_BEARER_TOKEN_BEDROCK", None)
        done = subprocess.run(
            [sys.executable, str(APP), *(s.id for s in scenarios)],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=APP_TIMEOUT,
            check=False,
        )
        requests = list(server.requests)
    assert done.returncode == 0, done.stderr

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    traces = list(client.search_traces(locations=[experiment.experiment_id], max_results=1000))
    by_scenario = {}
    for scenario in scenarios:  # the program ran them one after the other
        count = len(scenario.spans)
        by_scenario[scenario.id], requests = requests[:count], requests[count:]
    assert requests == [], "requests no scenario accounts for"
    return AppRun(json.loads(done.stdout), done.stderr, traces, by_scenario)


def test_app_ran_cleanly(app_run: AppRun) -> None:
    """No traceback, no warning, every stored trace finished."""
    assert "Traceback" not in app_run.stderr, app_run.stderr
    assert "warning" not in app_run.stderr.lower(), app_run.stderr
    assert all(t.info.state.value == "OK" for t in app_run.traces), "a trace was left unfinished"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_environment_variable_alone(scenario: Scenario, app_run: AppRun, standin: StandIn) -> None:
    """The program gets the results it gets untraced, and its Bedrock calls are stored as
    spans under the program's own span."""
    require(scenario)
    untraced, _ = observe(scenario.run)
    assert app_run.results[scenario.id] == json.loads(json.dumps(untraced))  # as printed

    app = f"app {scenario.id}"
    app_trace, app_span = root_of(app_run.traces, app)
    # Its traces: its own, and those of work it ran in executors (see Scenario.nested).
    mine = [app_trace] + [
        t
        for t in app_run.traces
        if t.info.trace_id != app_trace.info.trace_id
        and all(s.name.startswith("BedrockRuntime.") for s in t.data.spans)
        and app_span.start_time_ns <= t.data.spans[0].start_time_ns <= app_span.end_time_ns
    ]
    check_spans(scenario, mine, app, app_run.requests[scenario.id])
    assert len(bedrock_spans(mine)) == len(scenario.spans)
