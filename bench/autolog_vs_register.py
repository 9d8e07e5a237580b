"""Per-call cost of a client traced through ``bedrock_trace.autolog()`` against ``register()``.

Both clients get the same handlers (the plugin calls what ``register(client)`` does), so their
cost should match; this measures it instead of assuming it. Same fixed ``before-send``
responses as ``bench/run.py``, rounds interleaved in random order, medians of batch times.

    python bench/autolog_vs_register.py [--rounds N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence

import workloads as W

import bedrock_trace
from bedrock_trace.testing import capture_traces

WORKLOADS = ("converse_small", "invoke_model", "converse_stream_100")
BATCH = 50


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)
    W.isolate_from_machine_config()
    with capture_traces() as capture:
        bench = W.Bench(capture, stream_sizes=(100,), with_autolog=False)
        bedrock_trace.autolog()
        autologged = W.make_session().client("bedrock-runtime")
        for op in ("Converse", "InvokeModel", "ConverseStream", "InvokeModelWithResponseStream"):
            W.install(autologged, "bedrock-runtime", op, bench.responses[op])
        calls = {}
        for name in WORKLOADS:
            w = bench.workload(name)
            calls[(name, "register")] = w.call_with(bench.clients.traced)
            calls[(name, "autolog")] = w.call_with(autologged)
        for key, call in calls.items():  # warm up, and check each records its span
            capture.clear()
            call()
            bedrock_trace.testing.flush()
            if len(capture.spans) != 1:
                raise RuntimeError(f"{key}: expected one span, got {len(capture.spans)}")
        times: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
        rng = random.Random(7)
        for _ in range(args.rounds):
            order = list(calls)
            rng.shuffle(order)
            for key in order:
                started = time.perf_counter()
                for _ in range(BATCH):
                    calls[key]()
                times[key].append((time.perf_counter() - started) / BATCH * 1e6)
            capture.clear()
        bedrock_trace.autolog(disable=True)
    print(f"per call, microseconds (median of {args.rounds} batches of {BATCH})")
    print(f"{'workload':<22} {'register':>10} {'autolog':>10} {'autolog/register':>17}")
    for name in WORKLOADS:
        reg = statistics.median(times[(name, "register")])
        auto = statistics.median(times[(name, "autolog")])
        print(f"{name:<22} {reg:>10.1f} {auto:>10.1f} {auto / reg:>17.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
