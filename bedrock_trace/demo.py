"""``bedrock-trace demo``: the reference MLflow/Bedrock tutorial, offline, in one command.

Starts the Bedrock stand-in on loopback (or, with ``--live``, uses real Bedrock), points real
boto3 clients at it, and runs the tutorial's three scenarios and a Bedrock Agent with
``bedrock_trace`` registered:

1. a basic ``converse`` call;
2. a ``converse_stream`` call, printed as it streams;
3. a tool-calling agent: an ``@mlflow.trace`` AGENT function calling ``converse``, a TOOL
   function, and ``converse`` again;
4. a Bedrock Agent with a knowledge base: ``invoke_agent`` with ``enableTrace``, the agent's own
   steps (model invocations, the knowledge-base lookup, the action group) as child spans.

Traces go to a local MLflow store (a SQLite file in the working directory; needs the ``demo``
extra, which brings full ``mlflow``) or to ``--tracking-uri``. Each trace is printed as a tree
(spans, durations, tokens, status), followed by how to open it in the MLflow UI: a
``bedrock-trace ui`` command with absolute paths, which runs as printed from any folder.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shlex
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

DEFAULT_MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
DEFAULT_STORE = "sqlite:///bedrock-trace-demo.db"
EXPERIMENT = "bedrock-trace-demo"

WEATHER_TOOL = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "Get the current weather for a city.",
                "inputSchema": {
                    "json": {
                        "type": "object",
                        "properties": {"city": {"type": "string", "description": "City name"}},
                        "required": ["city"],
                    }
                },
            }
        }
    ]
}


# Canned answers for the stand-in (anything else gets its default reply, which also drives the
# agent's tool call from the question).
DEMO_SCENARIO = {
    "rules": [
        {
            "contains": "MLflow Tracing",
            "reply": {
                "text": "MLflow Tracing records every step of your LLM app as a trace of spans.",
                "input_tokens": 16,
                "output_tokens": 15,
            },
        },
        {
            "contains": "haiku",
            "reply": {
                "text": "Spans open and close,\nevery token accounted:\nthe trace tells the tale.",
                "input_tokens": 14,
                "output_tokens": 19,
                "pieces": 8,
            },
        },
    ]
}


# The stand-in answers any agent id; with --live, --agent-id and --agent-alias-id name yours.
DEMO_AGENT_ID = "DEMOAGENT1"
DEMO_AGENT_ALIAS = "TSTALIASID"
AGENT_QUESTION = "I'm flying to Lisbon next week: what does the travel policy say about flights?"


# --- the scenarios ------------------------------------------------------------------------


def basic(client: Any, model_id: str, out: TextIO) -> str:
    """Scenario 1: one converse call."""
    response = client.converse(
        modelId=model_id,
        messages=[{"role": "user", "content": [{"text": "What is MLflow Tracing, in one line?"}]}],
        inferenceConfig={"maxTokens": 200, "temperature": 0.2},
    )
    text = _text_of(response["output"]["message"])
    print(f"  assistant: {text}", file=out)
    return text


def streaming(client: Any, model_id: str, out: TextIO) -> str:
    """Scenario 2: converse_stream, printing the text as it arrives."""
    response = client.converse_stream(
        modelId=model_id,
        messages=[{"role": "user", "content": [{"text": "Write a haiku about tracing."}]}],
        inferenceConfig={"maxTokens": 200},
    )
    parts = []
    print("  assistant (streamed): ", end="", file=out, flush=True)
    for event in response["stream"]:
        delta = event.get("contentBlockDelta", {}).get("delta", {})
        if "text" in delta:
            parts.append(delta["text"])
            print(delta["text"], end="", file=out, flush=True)
    print(file=out)
    return "".join(parts)


def agent(client: Any, model_id: str, out: TextIO, question: str = "") -> str:
    """Scenario 3: a tool-calling agent; one trace of four spans."""
    import mlflow
    from mlflow.entities import SpanType

    @mlflow.trace(span_type=SpanType.TOOL)
    def get_weather(city: str) -> str:
        return f"It is sunny and 21°C in {city}."

    @mlflow.trace(span_type=SpanType.AGENT)
    def weather_agent(question: str) -> str:
        messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": question}]}]
        while True:
            response = client.converse(modelId=model_id, messages=messages, toolConfig=WEATHER_TOOL)
            message = response["output"]["message"]
            messages.append(message)
            if response["stopReason"] != "tool_use":
                return _text_of(message)
            results = []
            for block in message["content"]:
                if "toolUse" in block:
                    use = block["toolUse"]
                    result = get_weather(**use["input"])
                    results.append(
                        {
                            "toolResult": {
                                "toolUseId": use["toolUseId"],
                                "content": [{"text": result}],
                            }
                        }
                    )
            messages.append({"role": "user", "content": results})

    answer = weather_agent(question or "What's the weather like in Paris today?")
    print(f"  agent: {answer}", file=out)
    return answer


SCENARIOS: tuple[tuple[str, Callable[[Any, str, TextIO], str]], ...] = (
    ("basic converse", basic),
    ("converse_stream", streaming),
    ("tool-calling agent", agent),
)


def knowledge_agent(
    client: Any,
    out: TextIO,
    agent_id: str = DEMO_AGENT_ID,
    alias_id: str = DEMO_AGENT_ALIAS,
    question: str = AGENT_QUESTION,
) -> str:
    """Scenario 4: a Bedrock Agent with a knowledge base, asked with its trace switched on.

    ``client`` is a ``bedrock-agent-runtime`` client. The agent's own account of its steps
    arrives as ``trace`` events beside the answer's chunks; bedrock_trace turns them into the
    invoke span's children while the stream is read.
    """
    response = client.invoke_agent(
        agentId=agent_id,
        agentAliasId=alias_id,
        sessionId=f"demo-{uuid.uuid4().hex[:12]}",
        inputText=question,
        enableTrace=True,
    )
    parts, sources = [], []
    for event in response["completion"]:
        chunk = event.get("chunk")
        if chunk is None:
            continue
        parts.append(chunk["bytes"].decode("utf-8"))
        for citation in chunk.get("attribution", {}).get("citations", []):
            for reference in citation.get("retrievedReferences", []):
                sources.append(_source_of(reference.get("location", {})))
    answer = "".join(parts)
    print(f"  agent: {answer}", file=out)
    for source in dict.fromkeys(sources):
        print(f"  source: {source}", file=out)
    return answer


def _source_of(location: dict[str, Any]) -> str:
    """The URI or URL of a retrieved reference's location, whatever its type."""
    for value in location.values():
        if isinstance(value, dict):
            for key in ("uri", "url", "id", "query"):
                if isinstance(value.get(key), str):
                    return str(value[key])
    return str(location.get("type", "?"))


def _text_of(message: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in message.get("content", []))


# --- printing a trace ---------------------------------------------------------------------


def format_trace(trace: Any) -> str:
    """A readable tree of a trace: span name, type, duration, tokens, status."""
    spans = list(trace.data.spans)
    children: dict[str | None, list[Any]] = {}
    ids = {span.span_id for span in spans}
    for span in sorted(spans, key=lambda s: s.start_time_ns):
        parent = span.parent_id if span.parent_id in ids else None
        children.setdefault(parent, []).append(span)
    lines = [f"trace {trace.info.trace_id} ({trace.info.state})"]

    def walk(parent: str | None, prefix: str) -> None:
        siblings = children.get(parent, [])
        for index, span in enumerate(siblings):
            last = index == len(siblings) - 1
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{_span_line(span)}")
            walk(span.span_id, prefix + ("   " if last else "│  "))

    walk(None, "")
    return "\n".join(lines)


def _span_line(span: Any) -> str:
    duration_ms = ((span.end_time_ns or span.start_time_ns) - span.start_time_ns) / 1e6
    parts = [f"{span.name} [{span.span_type}] {duration_ms:.1f} ms"]
    usage = span.attributes.get("mlflow.chat.tokenUsage")
    if isinstance(usage, dict):
        parts.append(f"tokens {usage.get('input_tokens')} in / {usage.get('output_tokens')} out")
    events = len(span.events)
    if events:
        parts.append(f"{events} events")
    parts.append(str(span.status.status_code.value if span.status else "?"))
    return ", ".join(parts)


# --- running ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bedrock-trace demo",
        description="Run the MLflow/Bedrock tracing tutorial offline against a local stand-in.",
    )
    parser.add_argument(
        "--tracking-uri",
        help=f"where traces go (default: {DEFAULT_STORE}, a SQLite file here; needs mlflow)",
    )
    parser.add_argument("--experiment", default=EXPERIMENT, help="MLflow experiment name")
    parser.add_argument(
        "--live",
        action="store_true",
        help="call real Amazon Bedrock with your AWS credentials instead of the stand-in",
    )
    parser.add_argument("--region", default=None, help="AWS region (with --live)")
    parser.add_argument("--model-id", default=DEFAULT_MODEL, help="model or inference profile")
    parser.add_argument("--agent-id", help="your Bedrock Agent's id (with --live)")
    parser.add_argument("--agent-alias-id", help="your agent alias's id (with --live)")
    return parser


@contextlib.contextmanager
def _endpoint(live: bool) -> Iterator[str | None]:
    if live:
        yield None
        return
    from bedrock_trace.standin import StandIn

    with StandIn(scenario=DEMO_SCENARIO) as server:
        yield server.endpoint_url


def _session(live: bool, region: str | None) -> Any:
    import boto3

    if live:
        return boto3.Session(region_name=region)
    # The stand-in accepts any credentials; never send real ones to it.
    return boto3.Session(
        aws_access_key_id="AKIADEMODEMODEMODEMO",
        aws_secret_access_key="demo-secret",
        region_name=region or "us-east-1",
    )


def _configure_mlflow(tracking_uri: str | None, experiment: str) -> str | None:
    """Point MLflow at the store; returns an error message if that cannot work here."""
    import mlflow

    from bedrock_trace._ui import absolute_store_uri

    # Absolute, so that the printed UI command works from any folder.
    uri = absolute_store_uri(tracking_uri or DEFAULT_STORE)
    local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
    # Local stores live in full mlflow (with SQLAlchemy); mlflow-tracing has none.
    if local and importlib.util.find_spec("sqlalchemy") is None:
        return (
            f"A local store ({uri}) needs full MLflow: pip install mlflow (in a bedrock-trace "
            "checkout: pip install -e '.[demo]'), or pass --tracking-uri http://<your server>."
        )
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    return None


def run(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the demo; returns the process exit code."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    import mlflow

    import bedrock_trace

    if error := _configure_mlflow(args.tracking_uri, args.experiment):
        print(error, file=sys.stderr)
        return 2
    if not args.live:
        # botocore will not send a Bedrock API key to a plain-http endpoint; nor should we.
        os.environ.pop("AWS_BEARER_TOKEN_BEDROCK", None)
    trace_ids = []
    with _endpoint(args.live) as endpoint_url:
        where = "Amazon Bedrock (live)" if args.live else f"the Bedrock stand-in at {endpoint_url}"
        print(f"bedrock-trace demo: {where}, model {args.model_id}", file=out)
        session = _session(args.live, args.region)
        bedrock_trace.register(session)
        client = session.client("bedrock-runtime", endpoint_url=endpoint_url)
        for title, scenario in SCENARIOS:
            print(f"\n== {title}", file=out)
            scenario(client, args.model_id, out)
            trace_id = mlflow.get_last_active_trace_id()
            if trace_id:
                trace_ids.append(trace_id)
        print("\n== a Bedrock Agent with a knowledge base", file=out)
        if args.live and not (args.agent_id and args.agent_alias_id):
            print("  skipped: --live needs --agent-id and --agent-alias-id", file=out)
        else:
            agents = session.client("bedrock-agent-runtime", endpoint_url=endpoint_url)
            knowledge_agent(
                agents,
                out,
                agent_id=args.agent_id or DEMO_AGENT_ID,
                alias_id=args.agent_alias_id or DEMO_AGENT_ALIAS,
            )
            trace_id = mlflow.get_last_active_trace_id()
            if trace_id:
                trace_ids.append(trace_id)
        bedrock_trace.unregister(session)
    with contextlib.suppress(AttributeError):
        mlflow.flush_trace_async_logging()
    print("\n== traces", file=out)
    for trace_id in trace_ids:
        trace = mlflow.get_trace(trace_id)
        print(format_trace(trace) if trace else f"trace {trace_id}: not found", file=out)
    _print_ui_hint(args, trace_ids, out)
    return 0


def _print_ui_hint(args: argparse.Namespace, trace_ids: list[str], out: TextIO) -> None:
    import mlflow

    from bedrock_trace import _ui

    experiment = mlflow.get_experiment_by_name(args.experiment)
    experiment_id = experiment.experiment_id if experiment else "0"
    uri = mlflow.get_tracking_uri()
    print("\n== open them in the MLflow UI", file=out)
    if uri.startswith("sqlite:"):
        # Absolute paths and this interpreter's own commands: they run as printed from anywhere.
        quoted = shlex.quote(uri)
        print(
            f"  {_ui.command_prefix()} ui --tracking-uri {quoted} "
            f"--experiment {shlex.quote(args.experiment)}",
            file=out,
        )
        print("  (starts the MLflow UI and opens these traces; or start it yourself with", file=out)
        print(
            f"   {shlex.quote(sys.executable)} -m mlflow ui --backend-store-uri {quoted} "
            f"--port {_ui.DEFAULT_PORT})",
            file=out,
        )
        base = f"http://127.0.0.1:{_ui.DEFAULT_PORT}"
    else:
        base = uri.rstrip("/")
    print(f"  {_ui.traces_url(base, experiment_id)}", file=out)
    for trace_id in trace_ids:
        print(f"  {base}/#/experiments/{experiment_id}/traces/{trace_id}", file=out)


USAGE = """\
usage: bedrock-trace <command> [options]     (bedrock-trace <command> --help for details)

  demo      the MLflow Bedrock tutorial's scenarios, traced, against a local stand-in
            [--tracking-uri URI] [--experiment NAME] [--live] [--region R] [--model-id M]
            [--agent-id A --agent-alias-id L]
  ui        start the MLflow UI on a local trace store and open its traces
            [--tracking-uri URI] [--experiment NAME] [--host H] [--port P] [--no-browser]
  standin   a local Bedrock Runtime stand-in (real wire protocol, scripted answers)
            [--host H] [--port P] [--scenario FILE] [--quiet]
  run       run a program with every Bedrock client it creates traced (no code change)
            [--quiet] [--no-check] -- COMMAND [ARGS...]
"""


def main(argv: Sequence[str] | None = None) -> int:
    """``bedrock-trace`` command line: ``demo``, ``ui``, ``standin`` and ``run``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "standin":
        from bedrock_trace import standin

        return standin.main(argv[1:])
    if argv and argv[0] == "demo":
        return run(argv[1:])
    if argv and argv[0] == "ui":
        from bedrock_trace import _ui

        return _ui.main(argv[1:])
    if argv and argv[0] == "run":
        from bedrock_trace import _run

        return _run.main(argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    print(USAGE, end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
