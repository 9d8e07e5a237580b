"""A program that uses agent frameworks and MLflow, and never imports ``bedrock_trace``.

Run by the tests with ``BOTOCORE_EXPERIMENTAL__PLUGINS="bedrock_trace=bedrock_trace.plugin"``
and MLflow configured by its own variables (``MLFLOW_TRACKING_URI``,
``MLFLOW_EXPERIMENT_NAME``)::

    python app.py langchain-chat strands-tools ...

Each scenario runs under its own span, ``app <scenario id>``. The results are printed as one
JSON object on stdout.
"""

from __future__ import annotations

import json
import sys

import mlflow
from scenarios import BY_ID


def main(ids: list[str]) -> int:
    results = {}
    for scenario_id in ids:
        results[scenario_id] = mlflow.trace(name=f"app {scenario_id}")(BY_ID[scenario_id].run)()
    if "bedrock_trace" in sys.modules and "bedrock_trace.plugin" not in sys.modules:
        raise AssertionError("bedrock_trace was imported, but not by botocore's plugin hook")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
