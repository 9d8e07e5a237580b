"""What MLflow stores for every scenario is what it stored before the performance work.

tests/golden/ holds the traces of tests/stored_traces.py's cases as the code before the fast
path and the other optimisations stored them (recorded with ``python -m tests.stored_traces``
on that code), one folder per mlflow-tracing and botocore pair, since both shape what is
stored: the oldest supported pair (the lowest-dependency CI run) and the newest at the time.
"""

from __future__ import annotations

import json

import pytest

from tests.stored_traces import CASES, GOLDEN, golden_path, run_case, versions


@pytest.mark.parametrize("case", list(CASES))
def test_the_stored_traces_are_those_of_before(case):
    path = golden_path(case)
    if not path.parent.is_dir():
        recorded = sorted(p.name for p in GOLDEN.iterdir())
        pytest.skip(f"no traces recorded for {versions()} (recorded for: {recorded})")
    assert run_case(case) == json.loads(path.read_text(encoding="utf-8"))
