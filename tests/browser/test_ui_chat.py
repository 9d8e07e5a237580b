"""The MLflow UI renders bedrock_trace spans as chats, checked in a real browser.

A real ``mlflow server`` (SQLite store) receives the demo's traces and one ``invoke_model``
trace; ``check_chat.mjs`` (playwright-core driving Debian's ``/usr/bin/chromium``) opens each
span in the trace view and in the notebook trace renderer and reports, as JSON, whether the
"User" / "Assistant" cards show the prompt and the reply. See docs/browser-check.md.

Needs full ``mlflow`` (not just mlflow-tracing), ``node`` >= 20, ``/usr/bin/chromium`` and
``npm ci`` in this folder. Without them the test is skipped, saying what is missing; with
``BEDROCK_TRACE_REQUIRE_BROWSER=1`` (CI) it fails instead.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import inspect
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "check_chat.mjs"
ARTIFACTS = HERE / "artifacts"
CHROMIUM = os.environ.get("BEDROCK_TRACE_CHROMIUM", "/usr/bin/chromium")
EXPERIMENT = "browser-check"
REQUIRE = os.environ.get("BEDROCK_TRACE_REQUIRE_BROWSER", "") not in ("", "0", "false")

SERVER_START_TIMEOUT = 90.0  # a cold first start (imports, DB migrations) takes ~10-25 s
NODE_TIMEOUT = 180.0

# The invoke_model check: an Anthropic messages body, answered by the stand-in.
INVOKE_SYSTEM = "Answer in one short sentence."
INVOKE_PROMPT = "What is the capital of France?"
INVOKE_REPLY = "The capital of France is Paris."
# The image check: a converse prompt with a picture, recorded as an MLflow attachment.
IMAGE_PROMPT = "What is in this picture?"
IMAGE_REPLY = "A checkerboard of orange and blue squares."
IMAGE_SIZE = (96, 64)


def _missing() -> list[str]:
    """What this machine lacks for the browser check, each with how to get it."""
    missing = []
    try:
        importlib.metadata.distribution("mlflow")
    except importlib.metadata.PackageNotFoundError:
        missing.append(
            "full mlflow is not installed (only mlflow-tracing?): pip install -e '.[demo]'"
        )
    else:
        spec = importlib.util.find_spec("mlflow")
        ui = Path(spec.origin).parent / "server" / "js" / "build" / "index.html" if spec else None
        if ui is None or not ui.is_file() or importlib.util.find_spec("sqlalchemy") is None:
            missing.append("mlflow's server or UI build is missing: pip install -e '.[demo]'")
    node = shutil.which("node")
    if node is None:
        missing.append("node is not on PATH: apt-get install -y nodejs npm")
    else:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        major = version.lstrip("v").split(".")[0]
        if not major.isdigit() or int(major) < 20:
            missing.append(f"node {version or '?'} is too old: playwright-core needs node >= 20")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} is missing: apt-get install -y chromium")
    if not (HERE / "node_modules" / "playwright-core" / "package.json").is_file():
        missing.append("playwright-core is not installed: npm ci --prefix tests/browser")
    return missing


@pytest.fixture(scope="module")
def requirements() -> None:
    missing = _missing()
    if missing:
        reason = "browser check needs: " + "; ".join(missing)
        if REQUIRE:
            pytest.fail(f"{reason} (BEDROCK_TRACE_REQUIRE_BROWSER is set)", pytrace=False)
        pytest.skip(reason)


class Server(NamedTuple):
    url: str
    startup_s: float  # until /health answered


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the server and its workers: its own process group, SIGTERM then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers left behind by the server
    if proc.poll() is None:
        proc.wait(timeout=5)


@pytest.fixture(scope="module")
def mlflow_server(requirements: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``mlflow server`` on a free loopback port, SQLite store."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = folder / "server.log"
    env = dict(os.environ)
    # The UI does not need MLflow's background job runner (a dozen huey consumer processes).
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
        "--default-artifact-root", str(folder / "art"),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=folder,
            start_new_session=True,
        )
    try:
        started = time.monotonic()
        deadline = started + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"mlflow server exited with {proc.returncode} before /health answered:\n"
                    f"{_tail(log_path)}",
                    pytrace=False,
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server at {url} did not answer /health within "
                    f"{SERVER_START_TIMEOUT:.0f} s:\n{_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.25)
        yield Server(url, time.monotonic() - started)
    finally:
        _stop(proc)


@pytest.fixture
def mlflow_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Put MLflow's global tracking URI (and its environment variables) back after the test."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    saved_uri = getattr(utils, "_tracking_uri", None)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    yield
    mlflow.set_tracking_uri(saved_uri)  # also resets MLflow's tracer provider


@contextlib.contextmanager
def _standin_client(url: str, scenario: dict[str, Any], config: Any = None) -> Iterator[Any]:
    """A traced client of the stand-in (answering ``scenario``), traces going to ``url``."""
    import boto3
    import mlflow

    import bedrock_trace
    from bedrock_trace.standin import StandIn

    mlflow.set_tracking_uri(url)
    mlflow.set_experiment(EXPERIMENT)
    with StandIn(scenario=scenario) as server:
        session = boto3.Session(
            aws_access_key_id="AKIADEMODEMODEMODEMO",
            aws_secret_access_key="demo-secret",
            region_name="us-east-1",
        )
        bedrock_trace.register(session, config=config)
        try:
            yield session.client("bedrock-runtime", endpoint_url=server.endpoint_url)
        finally:
            bedrock_trace.unregister(session)


def _last_trace_id() -> str:
    import mlflow

    trace_id = mlflow.get_last_active_trace_id()
    assert trace_id, "the call made no trace"
    mlflow.flush_trace_async_logging()
    return trace_id


def _invoke_model_trace(url: str) -> str:
    """One ``invoke_model`` with an Anthropic messages body, traced to the server."""
    from bedrock_trace import demo

    scenario = {
        "rules": [
            {
                "operation": "invoke_model",
                "contains": "capital of France",
                "reply": {"text": INVOKE_REPLY, "input_tokens": 21, "output_tokens": 8},
            }
        ]
    }
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "system": INVOKE_SYSTEM,
        "messages": [{"role": "user", "content": [{"type": "text", "text": INVOKE_PROMPT}]}],
    }
    with _standin_client(url, scenario) as client:
        response = client.invoke_model(modelId=demo.DEFAULT_MODEL, body=json.dumps(body))
        reply = json.loads(response["body"].read())
    assert reply["content"][0]["text"] == INVOKE_REPLY, reply
    return _last_trace_id()


def _png(width: int, height: int) -> bytes:
    """A checkerboard PNG (orange and blue, 16-pixel squares), written out by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    orange, blue = bytes((255, 140, 0)), bytes((30, 90, 200))
    rows = b"".join(
        b"\x00" + b"".join(orange if (x // 16 + y // 16) % 2 else blue for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _converse_image_trace(url: str) -> str:
    """One ``converse`` with a text and an image block, binary content recorded in full."""
    import bedrock_trace
    from bedrock_trace import demo

    scenario = {"rules": [{"contains": "picture", "reply": {"text": IMAGE_REPLY}}]}
    image = {"image": {"format": "png", "source": {"bytes": _png(*IMAGE_SIZE)}}}
    config = bedrock_trace.TraceConfig(include_binary=True)
    with _standin_client(url, scenario, config) as client:
        response = client.converse(
            modelId=demo.DEFAULT_MODEL,
            messages=[{"role": "user", "content": [{"text": IMAGE_PROMPT}, image]}],
        )
    assert response["output"]["message"]["content"] == [{"text": IMAGE_REPLY}], response
    return _last_trace_id()


def _traces_by_root(url: str, experiment_id: str) -> dict[str, Any]:
    """The experiment's traces, keyed by root span name (the newest trace wins)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=url)
    # mlflow 3.17 deprecates experiment_ids for locations; older 3.x have only experiment_ids.
    params = inspect.signature(client.search_traces).parameters
    where = "locations" if "locations" in params else "experiment_ids"
    traces = client.search_traces(
        **{where: [experiment_id]}, max_results=50, order_by=["timestamp_ms ASC"]
    )
    by_root: dict[str, Any] = {}
    for trace in traces:
        roots = [span for span in trace.data.spans if span.parent_id is None]
        if len(roots) == 1:
            by_root[roots[0].name] = trace
    return by_root


def _check(name: str, trace: Any, expect: list[dict[str, str]], model: str) -> dict[str, Any]:
    """One trace for check_chat.mjs; first, the span itself must hold the expected texts."""
    (span,) = trace.data.spans
    recorded = json.dumps([span.inputs, span.outputs, span.attributes], ensure_ascii=False)
    for want in expect:
        assert json.dumps(want["text"], ensure_ascii=False)[1:-1] in recorded, (
            f"{name}: the span itself lacks {want['role']} text {want['text']!r} "
            "(a tracing or demo problem, not the UI's)"
        )
    return {
        "name": name,
        "trace_id": trace.info.trace_id,
        "span_id": span.span_id,
        "span_name": span.name,
        "model": model,
        "expect": expect,
        "views": ["trace", "renderer"],
    }


def _run_node(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    try:
        done = subprocess.run(
            ["node", str(SCRIPT), str(spec_path)],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"check_chat.mjs took over {NODE_TIMEOUT:.0f} s; stderr:\n{error.stderr}")
    lines = done.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(
            f"check_chat.mjs exited {done.returncode} without a JSON result.\n"
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        )
    result["stderr"] = done.stderr
    return result


def _report(result: dict[str, Any]) -> str:
    lines = []
    for r in result["results"]:
        status = "ok" if r["ok"] else "FAILED"
        lines.append(f"- {r['name']} / {r['view']}: {status} ({r['elapsed_ms']} ms) {r['url']}")
        for error in r["errors"]:
            lines.append(f"    error: {error}")
        if r.get("images"):
            lines.append(f"    images: {json.dumps(r['images'])}")
        if not r["ok"]:
            lines.append(f"    cards: {json.dumps(r['messages'])}")
            lines.append(f"    page text: {r['excerpt']}")
            if r["console_errors"]:
                lines.append(f"    console errors: {r['console_errors'][:5]}")
            lines.append(f"    screenshot: {r['screenshot']}")
        if r["blocked"]:
            lines.append(f"    blocked non-loopback requests: {r['blocked'][:5]}")
    return "\n".join(lines)


def _browse(
    url: str,
    experiment_id: str,
    checks: list[dict[str, Any]],
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    timings: str,
) -> dict[str, Any]:
    """Run check_chat.mjs on the checks, print its summary, fail on a fatal error."""
    ARTIFACTS.mkdir(exist_ok=True)
    spec = {
        "base_url": url,
        "experiment_id": experiment_id,
        "artifacts": str(ARTIFACTS),
        "checks": checks,
    }
    result = _run_node(spec, folder)
    with capsys.disabled():
        print(
            f"\nbrowser check: {timings}, "
            f"browser in {result['elapsed_ms'] / 1000:.1f} s ({result.get('chromium')})\n"
            + _report(result)
        )
    assert not result["fatal"], f"check_chat.mjs failed: {result['fatal']}\n{result['stderr']}"
    return result


def test_spans_render_as_chats(
    mlflow_server: Server, mlflow_state: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """converse, converse_stream and invoke_model spans show the prompt and reply as chats."""
    import mlflow

    from bedrock_trace import demo

    started = time.monotonic()
    url = mlflow_server.url
    out = io.StringIO()
    assert demo.run(["--tracking-uri", url, "--experiment", EXPERIMENT], out=out) == 0, (
        out.getvalue()
    )
    invoke_id = _invoke_model_trace(url)
    experiment = mlflow.MlflowClient(tracking_uri=url).get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    by_root = _traces_by_root(url, experiment.experiment_id)
    for name in ("BedrockRuntime.converse", "BedrockRuntime.converse_stream"):
        assert name in by_root, f"no single-span {name} trace; roots: {sorted(by_root)}"
    invoke = by_root.get("BedrockRuntime.invoke_model")
    assert invoke is not None, f"no invoke_model trace; roots: {sorted(by_root)}"
    assert invoke.info.trace_id == invoke_id
    # After the lookup by root span name, which would otherwise take it for the demo's.
    image_trace = mlflow.MlflowClient(tracking_uri=url).get_trace(_converse_image_trace(url))
    (image_span,) = image_trace.data.spans
    image_ref = image_span.inputs["messages"][0]["content"][1]["image"]["source"]["bytes"]
    assert image_ref.startswith("mlflow-attachment://"), image_ref

    rules = {rule["contains"]: rule["reply"]["text"] for rule in demo.DEMO_SCENARIO["rules"]}
    model = demo.DEFAULT_MODEL
    checks = [
        _check(
            "converse",
            by_root["BedrockRuntime.converse"],
            [
                {"role": "User", "text": "What is MLflow Tracing, in one line?"},
                {"role": "Assistant", "text": rules["MLflow Tracing"]},
            ],
            model,
        ),
        _check(
            "converse_stream",
            by_root["BedrockRuntime.converse_stream"],
            [
                {"role": "User", "text": "Write a haiku about tracing."},
                {"role": "Assistant", "text": rules["haiku"]},
            ],
            model,
        ),
        _check(
            "invoke_model",
            invoke,
            [
                {"role": "System", "text": INVOKE_SYSTEM},
                {"role": "User", "text": INVOKE_PROMPT},
                {"role": "Assistant", "text": INVOKE_REPLY},
            ],
            model,
        ),
        {
            **_check(
                "converse_image",
                image_trace,
                [
                    {"role": "User", "text": IMAGE_PROMPT},
                    {"role": "Assistant", "text": IMAGE_REPLY},
                ],
                model,
            ),
            "image": {"width": IMAGE_SIZE[0], "height": IMAGE_SIZE[1]},
            # MLflow 3.17's trace view shows a converse image block as its reference text; the
            # renderer's Chat view shows the picture (docs/browser-check.md).
            "views": ["renderer"],
        },
    ]
    timings = (
        f"mlflow server up in {mlflow_server.startup_s:.1f} s, "
        f"traces in {time.monotonic() - started:.1f} s"
    )
    result = _browse(url, experiment.experiment_id, checks, tmp_path, capsys, timings)
    views = {(r["name"], r["view"]) for r in result["results"]}
    assert views == {(c["name"], v) for c in checks for v in c["views"]}, views
    assert result["ok"], "the MLflow UI did not render the chats:\n" + _report(result)


def _agent_traces(url: str) -> tuple[str, str]:
    """The demo's Bedrock Agent run and one ``retrieve``, traced to the server."""
    import boto3
    import mlflow

    import bedrock_trace
    from bedrock_trace import demo
    from bedrock_trace.standin import StandIn

    mlflow.set_tracking_uri(url)
    mlflow.set_experiment(EXPERIMENT)
    with StandIn(scenario=demo.DEMO_SCENARIO) as server:
        session = boto3.Session(
            aws_access_key_id="AKIADEMODEMODEMODEMO",
            aws_secret_access_key="demo-secret",
            region_name="us-east-1",
        )
        bedrock_trace.register(session)
        try:
            agents = session.client("bedrock-agent-runtime", endpoint_url=server.endpoint_url)
            answer = demo.knowledge_agent(agents, io.StringIO())
            agent_id = mlflow.get_last_active_trace_id()
            results = agents.retrieve(
                knowledgeBaseId="KBEXAMPLE1",
                retrievalQuery={"text": "How many vacation days do I get?"},
            )
            retrieve_id = mlflow.get_last_active_trace_id()
        finally:
            bedrock_trace.unregister(session)
    assert "travel portal" in answer, answer
    assert results["retrievalResults"], results
    assert agent_id, "invoke_agent made no trace"
    assert retrieve_id, "retrieve made no trace"
    assert agent_id != retrieve_id, "invoke_agent and retrieve share a trace"
    mlflow.flush_trace_async_logging()
    return agent_id, retrieve_id


def _documents_check(name: str, span: Any) -> dict[str, Any]:
    """A RETRIEVER span for check_chat.mjs; first, its outputs must be MLflow documents."""
    assert span.span_type == "RETRIEVER", (name, span.span_type)
    outputs = span.outputs
    assert isinstance(outputs, list), f"{name}: outputs are not a list: {outputs!r}"
    assert outputs, f"{name}: no documents"
    documents = []
    for document in outputs:
        assert {"page_content", "metadata"} <= set(document), (
            f"{name}: {document!r} is not an MLflow Document (a tracing problem, not the UI's)"
        )
        documents.append(
            {"text": document["page_content"], "doc_uri": document["metadata"]["doc_uri"]}
        )
    return {
        "name": name,
        "kind": "documents",
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "span_name": span.name,
        "documents": documents,
    }


def test_agent_tree_and_documents(
    mlflow_server: Server, mlflow_state: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Bedrock Agent run shows as its span tree; RETRIEVER spans list their documents."""
    import mlflow

    started = time.monotonic()
    url = mlflow_server.url
    agent_id, retrieve_id = _agent_traces(url)
    client = mlflow.MlflowClient(tracking_uri=url)
    agent = client.get_trace(agent_id)
    retrieve = client.get_trace(retrieve_id)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None

    spans = agent.data.spans
    (root,) = [span for span in spans if span.parent_id is None]
    assert root.name == "BedrockAgentRuntime.invoke_agent"
    types = {span.span_type for span in spans}
    assert {"AGENT", "CHAIN", "LLM", "RETRIEVER", "TOOL"} <= types, types
    (lookup,) = [span for span in spans if span.span_type == "RETRIEVER"]
    (retrieved,) = retrieve.data.spans
    checks = [
        {
            "name": "agent-tree",
            "kind": "tree",
            "trace_id": agent_id,
            "spans": [
                {"span_id": span.span_id, "name": span.name, "parent_id": span.parent_id}
                for span in spans
            ],
        },
        _documents_check("agent-knowledge-base", lookup),
        _documents_check("retrieve", retrieved),
    ]
    timings = f"agents: traces in {time.monotonic() - started:.1f} s"
    result = _browse(url, experiment.experiment_id, checks, tmp_path, capsys, timings)
    assert {r["name"] for r in result["results"]} == {c["name"] for c in checks}
    assert result["ok"], "the MLflow UI did not render the agent run:\n" + _report(result)
