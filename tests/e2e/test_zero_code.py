"""Zero code, end to end: a program that never imports bedrock_trace, started through
``bedrock-trace run`` (or with the plugin variable alone), its Bedrock spans stored by a real
MLflow tracking server under the program's own spans."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bedrock_trace.standin import StandIn

from ..conftest import ACCESS_KEY, SECRET_KEY
from .conftest import FULL_MLFLOW, MlflowServer

pytestmark = pytest.mark.skipif(
    not FULL_MLFLOW, reason="the MLflow tracking server needs full mlflow (pip install mlflow)"
)

# What a user writes: MLflow's decorator around their own function, boto3 as usual. The
# program knows nothing of bedrock_trace; the endpoint and MLflow come from the environment.
APP = textwrap.dedent(
    """
    import boto3
    import mlflow

    @mlflow.trace(name="answer_question")
    def answer(question):
        client = boto3.client("bedrock-runtime")
        response = client.converse(
            modelId="us.anthropic.claude-3-5-haiku-20241022-v1:0",
            messages=[{"role": "user", "content": [{"text": question}]}],
        )
        stream = client.converse_stream(
            modelId="us.anthropic.claude-3-5-haiku-20241022-v1:0",
            messages=[{"role": "user", "content": [{"text": question}]}],
        )["stream"]
        streamed = "".join(
            event["contentBlockDelta"]["delta"].get("text", "")
            for event in stream
            if "contentBlockDelta" in event
        )
        return response["output"]["message"]["content"][0]["text"], streamed

    print(answer("What is the capital of France?"))
    print(mlflow.get_last_active_trace_id())
    """
)


def run_app(
    tmp_path: Path, server: MlflowServer, standin: StandIn, experiment: str, via_run: bool
) -> str:
    """Run the program; returns the id of the trace it made."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "BOTOCORE_EXPERIMENTAL__"))
    }
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME=standin.endpoint_url,
        MLFLOW_TRACKING_URI=server.url,
        MLFLOW_EXPERIMENT_NAME=experiment,
    )
    if via_run:
        command = [sys.executable, "-m", "bedrock_trace.demo", "run", "--", sys.executable]
    else:
        env["BOTOCORE_EXPERIMENTAL__PLUGINS"] = "bedrock_trace=bedrock_trace.plugin"
        command = [sys.executable]
    done = subprocess.run(
        [*command, str(app)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stdout
    return lines[-1]


@pytest.mark.parametrize("via_run", [True, False], ids=["bedrock-trace-run", "variable-alone"])
def test_program_without_bedrock_trace_is_traced(mlflow_server, tmp_path, via_run):
    """The stored trace: the program's span, with converse and converse_stream under it."""
    import mlflow

    experiment = f"bedrock-trace-e2e.zero-code.{'run' if via_run else 'variable'}"
    with StandIn() as standin:
        trace_id = run_app(tmp_path, mlflow_server, standin, experiment, via_run)
    trace = mlflow.MlflowClient(tracking_uri=mlflow_server.url).get_trace(trace_id)
    spans = {span.name: span for span in trace.data.spans}
    assert set(spans) == {
        "answer_question",
        "BedrockRuntime.converse",
        "BedrockRuntime.converse_stream",
    }
    root = spans["answer_question"]
    for name in ("BedrockRuntime.converse", "BedrockRuntime.converse_stream"):
        span = spans[name]
        assert span.parent_id == root.span_id
        assert span.status.status_code == "OK"
        assert span.attributes["mlflow.chat.tokenUsage"]["total_tokens"] > 0
        assert "bedrock_trace.incomplete" not in span.attributes
    stored = trace.info.trace_location.mlflow_experiment.experiment_id
    assert (
        stored
        == mlflow.MlflowClient(mlflow_server.url).get_experiment_by_name(experiment).experiment_id
    )
