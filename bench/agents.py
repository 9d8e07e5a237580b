"""Benchmark: what tracing a Bedrock Agents stream (invoke_agent with its trace) costs per event.

Run from the repository root::

    python bench/agents.py            # about 2 minutes; writes its section of docs/benchmarks.md
    python bench/agents.py --quick    # smoke run (~30 s); writes nothing unless --docs

An agent run of ``steps`` orchestration steps (each: model invocation input and output,
rationale, an action-group call and its observation, so 5 ``trace`` events and 2 child spans,
plus a step span) followed by 4 answer chunks is answered from memory by a ``before-send``
handler, so botocore parses the event stream for real. A traced and an untraced client read
it whole, interleaved round-robin in random order, as ``bench/run.py`` does. The per-event
cost is the slope between two run sizes: (overhead at the larger - at the smaller) / (extra
events), which leaves out the per-call part (the invoke span itself).
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as W
from run import Summary, fmt_ratio, ratio_ci, slope_of, time_batch

import bedrock_trace
from bedrock_trace.testing import capture_traces, event_message

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:agents:begin -->", "<!-- bench:agents:end -->"
SERVICE = "bedrock-agent-runtime"
ARN = "arn:aws:bedrock:us-east-1:123456789012:agent-alias/AGENT12345/ALIAS12345"
KWARGS = {
    "agentId": "AGENT12345",
    "agentAliasId": "ALIAS12345",
    "sessionId": "bench-session",
    "inputText": "What is the weather in Paris?",
    "enableTrace": True,
}
FLOOR = "floor"
EVENTS_PER_STEP = 5
CHUNKS = 4


def _trace(member: str, body: dict[str, Any], ms: int) -> bytes:
    moment = f"2020-01-01T12:00:{ms // 1000:02d}.{ms % 1000:03d}000Z"
    return event_message(
        "trace",
        {
            "agentId": "AGENT12345",
            "sessionId": "bench-session",
            "eventTime": moment,
            "callerChain": [{"agentAliasArn": ARN}],
            "trace": {"orchestrationTrace": {member: body}},
        },
    )


def agent_stream(steps: int) -> bytes:
    """The event-stream body of an agent run with ``steps`` orchestration steps."""
    messages = []
    for step in range(steps):
        trace_id = f"7e3b1f0a-5c2d-4e8f-9a6b-1c2d3e4f5a6b-{step}"
        ms = step * 50
        prompt = "You are a travel assistant. " * 40  # ~1 KB prompt, as agents send
        messages += [
            _trace(
                "modelInvocationInput",
                {
                    "traceId": trace_id,
                    "text": prompt,
                    "type": "ORCHESTRATION",
                    "foundationModel": "anthropic.claude-3-5-haiku-20241022-v1:0",
                    "inferenceConfiguration": {"maximumLength": 2048, "temperature": 0.0},
                },
                ms,
            ),
            _trace(
                "modelInvocationOutput",
                {
                    "traceId": trace_id,
                    "rawResponse": {"content": "<invoke>get_weather</invoke>"},
                    "metadata": {"usage": {"inputTokens": 900, "outputTokens": 40}},
                },
                ms + 20,
            ),
            _trace("rationale", {"traceId": trace_id, "text": "I need the weather."}, ms + 21),
            _trace(
                "invocationInput",
                {
                    "traceId": trace_id,
                    "invocationType": "ACTION_GROUP",
                    "actionGroupInvocationInput": {
                        "actionGroupName": "TravelActions",
                        "function": "get_weather",
                        "parameters": [{"name": "city", "type": "string", "value": "Paris"}],
                    },
                },
                ms + 22,
            ),
            _trace(
                "observation",
                {
                    "traceId": trace_id,
                    "type": "ACTION_GROUP",
                    "actionGroupInvocationOutput": {"text": '{"temperature_c": 18}'},
                },
                ms + 30,
            ),
        ]
    for piece in ("It is ", "18 degrees ", "in Paris ", "today."):
        messages.append(
            event_message("chunk", {"bytes": base64.b64encode(piece.encode()).decode()})
        )
    return b"".join(messages)


def events_of(steps: int) -> int:
    return steps * EVENTS_PER_STEP + CHUNKS


def make_call(client: Any, responses: W.SizedResponses, steps: int) -> W.Call:
    def call() -> None:
        responses.size = steps
        for _event in client.invoke_agent(**KWARGS)["completion"]:
            pass

    return call


def floor_call(steps: int) -> W.Call:
    """The MLflow work alone, no botocore: the spans and span events tracing a run makes."""
    import mlflow
    from mlflow.entities import SpanEvent

    prompt = {"text": "You are a travel assistant. " * 40, "type": "ORCHESTRATION"}

    def call() -> None:
        root = mlflow.start_span_no_context("invoke_agent", span_type="AGENT", inputs=KWARGS)
        for _ in range(steps):
            step = mlflow.start_span_no_context("orchestration", "CHAIN", parent_span=root)
            for name, kind in (("model", "LLM"), ("get_weather", "TOOL")):
                child = mlflow.start_span_no_context(name, kind, parent_span=step, inputs=prompt)
                child.end(outputs={"rawResponse": {"content": "<invoke/>"}})
            step.end(outputs={"rationale": "I need the weather."})
            for _ in range(EVENTS_PER_STEP):
                root.add_event(SpanEvent("trace", attributes={"json": '{"part": "x"}'}))  # type: ignore[abstract]
        for _ in range(CHUNKS):
            root.add_event(SpanEvent("chunk", attributes={"json": '{"bytes": "x"}'}))  # type: ignore[abstract]
        root.end(outputs={"completion": "It is 18 degrees in Paris today."})

    return call


def measure(sizes: Sequence[int], budget_s: float, seed: int) -> dict[tuple[str, int], list[float]]:
    """Per-call times (µs) by (configuration, run size), one value per round."""
    W.isolate_from_machine_config()
    responses = W.SizedResponses(
        {
            steps: W.FixedResponse.of(
                agent_stream(steps),
                "application/vnd.amazon.eventstream",
                **{"x-amzn-bedrock-agent-content-type": "application/json"},
            )
            for steps in sizes
        },
        sizes[0],
    )
    plain = W.make_session().client(SERVICE)
    traced_session = W.make_session()
    bedrock_trace.register(traced_session)
    traced = traced_session.client(SERVICE)
    for client in (plain, traced):
        W.install(client, SERVICE, "InvokeAgent", responses)
    calls = {
        (config, steps): make_call(client, responses, steps)
        for config, client in ((W.UNTRACED, plain), (W.BEDROCK_TRACE, traced))
        for steps in sizes
    }
    calls.update({(FLOOR, steps): floor_call(steps) for steps in sizes})
    with capture_traces() as capture:
        batches = {}
        for key, call in calls.items():  # warm up, then ~20 ms per sample
            call()
            once = time_batch(call, 3)
            batches[key] = max(1, int(20_000 / max(once, 1.0)))
            capture.clear()
        samples: dict[tuple[str, int], list[float]] = {key: [] for key in calls}
        rng = random.Random(seed)
        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline:
            order = list(calls)
            rng.shuffle(order)
            for key in order:
                samples[key].append(time_batch(calls[key], batches[key]))
                capture.clear()
    bedrock_trace.unregister(traced_session)
    return samples


def report(samples: dict[tuple[str, int], list[float]], sizes: Sequence[int], seed: int) -> str:
    small, large = sizes[0], sizes[-1]
    extra = events_of(large) - events_of(small)
    rounds = len(samples[(W.UNTRACED, small)])
    everything = list(range(rounds))

    def overhead(steps: int) -> list[float]:
        pairs = zip(samples[(W.BEDROCK_TRACE, steps)], samples[(W.UNTRACED, steps)], strict=True)
        return [t - u for t, u in pairs]

    bt_slope = slope_of(overhead(small), overhead(large), extra)
    plain_slope = slope_of(samples[(W.UNTRACED, small)], samples[(W.UNTRACED, large)], extra)
    floor_slope = slope_of(samples[(FLOOR, small)], samples[(FLOOR, large)], extra)
    ratio = ratio_ci(bt_slope, plain_slope, rounds, 1000, random.Random(seed))
    vs_floor = ratio_ci(bt_slope, floor_slope, rounds, 1000, random.Random(seed))
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load} "
        "(1, 5, 15 min) when the run ended: on a busy machine every number here is inflated "
        "alike; read the ratios.",
        "",
        f"Rounds: {rounds}. An agent run of N orchestration steps has {EVENTS_PER_STEP}·N "
        f"trace events and {CHUNKS} chunks; tracing makes 3 spans per step (step, LLM, TOOL).",
        "",
        "Time per call, µs: median [p10-p90] over rounds. The floor makes the same spans and "
        "span events with MLflow directly, without botocore.",
        "",
        "| run | events | untraced | bedrock_trace | overhead | floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for steps in sizes:
        lines.append(
            f"| {steps} steps | {events_of(steps)} | "
            f"{Summary.of(samples[(W.UNTRACED, steps)]).text()} | "
            f"{Summary.of(samples[(W.BEDROCK_TRACE, steps)]).text()} | "
            f"{Summary.of(overhead(steps)).text()} | "
            f"{Summary.of(samples[(FLOOR, steps)]).text()} |"
        )
    lines += [
        "",
        "| per event | µs |",
        "|---|---:|",
        f"| untraced: botocore parsing one agent event | {plain_slope(everything):.1f} |",
        f"| bedrock_trace: overhead per agent event (slope) | {bt_slope(everything):.1f} |",
        f"| floor: the same MLflow spans and events, per event | {floor_slope(everything):.1f} |",
        f"| overhead / untraced cost, per event (90% CI) | {fmt_ratio(ratio)} |",
        f"| overhead / floor, per event (90% CI) | {fmt_ratio(vs_floor)} |",
        "",
    ]
    return "\n".join(lines)


def write_docs(path: Path, results: str) -> None:
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text:
        raise SystemExit(f"{path} has no {BEGIN} marker")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{results}{END}{tail}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, about 30 s")
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--docs", type=Path, help=f"write the results here (full run: {DOCS})")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    sizes = (2, 20)
    samples = measure(sizes, 15.0 if args.quick else 90.0, args.seed)
    results = report(samples, sizes, args.seed)
    print(results)
    docs = None if args.no_docs else (args.docs or (None if args.quick else DOCS))
    if docs is not None:
        write_docs(docs, results)
        print(f"written to {docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
