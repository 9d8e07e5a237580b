"""Where the overhead of tracing goes: bedrock_trace, MLflow, OpenTelemetry, botocore, other.

    python bench/profile_hot_paths.py --quick                          # smoke run, < 1 min
    python bench/profile_hot_paths.py --label after --out after.json   # a run, kept as JSON
    python bench/profile_hot_paths.py --compare before.json after.json --docs

For each workload of ``bench/workloads.py``, batches of ``bedrock_trace`` and ``untraced``
calls alternate in rounds, each run once timed (thread CPU time) and once under cProfile. A
function's self time counts for the package of its file (botocore includes boto3 and urllib3;
other is the bench's code and the in-memory trace destination ``bedrock_trace/testing.py``);
that of the standard library, built-ins and other libraries (``json``, ``dict.get``,
``cachetools``) for the code that called them, split by cProfile's per-caller times. A
package's overhead is the median over rounds of its traced minus its untraced time.
docs/benchmarks.md ("Profile") says how to read the numbers.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import sysconfig
import time
from collections import defaultdict
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as W

import bedrock_trace
from bedrock_trace.testing import capture_traces

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:profile:begin -->", "<!-- bench:profile:end -->"
GROUPS = ("bedrock_trace", "MLflow", "OpenTelemetry", "botocore", "other")
PACKAGES = {"mlflow": "MLflow", "opentelemetry": "OpenTelemetry", "botocore": "botocore"}
PACKAGES |= {"boto3": "botocore", "urllib3": "botocore"}
OURS = str(Path(bedrock_trace.__file__).resolve().parent)
STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())
# calls per configuration in the full run (the quick run makes a tenth of them, at least 2)
WORKLOADS = dict(converse_small=2000, converse_large=200, invoke_model=2000)
WORKLOADS |= dict(converse_stream_100=400, invoke_stream_100=400)
WORKLOADS |= dict(converse_stream_5000=20, invoke_stream_5000=20)
Func = tuple[str, int, str]  # pstats' key: file, first line, function name
NOBODY: Func = ("", 0, "(no caller)")


def place(filename: str) -> tuple[str | None, str]:
    """(group, module path) of a file; no group for the standard library, built-ins and the
    libraries of no group (``cachetools``, ``typing_extensions``): they work for their caller."""
    path = Path(filename)
    if filename.startswith(OURS):
        module = "bedrock_trace/" + path.relative_to(OURS).as_posix()
        return ("other" if module == "bedrock_trace/testing.py" else "bedrock_trace"), module
    for packages in ("site-packages", "dist-packages"):
        if packages in path.parts[:-1]:
            rest = path.parts[path.parts.index(packages) + 1 :]
            return PACKAGES.get(rest[0]), "/".join(rest)
    if filename in ("", "~") or filename.startswith(("<", STDLIB)):
        return None, filename
    return "other", path.name


def owned_time(stats: dict[Func, Any]) -> dict[Func, float]:
    """Seconds per function of a group: its self time and that of the code of no group it
    called, split by cProfile's per-caller times (through chains of such calls too)."""
    memo: dict[Func, dict[Func, float]] = {}

    def owners(func: Func) -> dict[Func, float]:  # code of no group: whom it works for, how much
        if func not in memo:
            memo[func] = {}  # a cycle of such calls adds nothing to itself
            callers = {c: edge[2] for c, edge in stats[func][4].items() if c != func}
            total, out = sum(callers.values()), defaultdict[Func, float](float)
            for caller, seconds in callers.items():
                weight = seconds / total if total else 1 / len(callers)
                if caller not in stats or place(caller[0])[0] is not None:
                    out[caller] += weight
                else:
                    for owner, share in owners(caller).items():
                        out[owner] += weight * share
            norm = sum(out.values())
            memo[func] = {k: v / norm for k, v in out.items()} if norm else {NOBODY: 1.0}
        return memo[func]

    owned: dict[Func, float] = defaultdict(float)
    for func, (_, _, self_seconds, _, _) in stats.items():
        if place(func[0])[0] is not None:
            owned[func] += self_seconds
        else:
            for owner, share in owners(func).items():
                owned[owner] += self_seconds * share
    assert abs(sum(owned.values()) - sum(s[2] for s in stats.values())) < 1e-6, "time lost"
    return owned


def qualified_names(profile: cProfile.Profile) -> dict[Func, str]:
    """``module.Class.function`` (the module without its top package) of the profiled code."""
    names = {}
    for code in (entry.code for entry in profile.getstats() if not isinstance(entry.code, str)):
        module = place(code.co_filename)[1].removesuffix(".py").removesuffix("/__init__")
        name = getattr(code, "co_qualname", code.co_name).replace(".<locals>", "")
        key = (code.co_filename, code.co_firstlineno, code.co_name)
        names[key] = ".".join([*module.split("/")[1:], name])
    return names


def repeat(call: W.Call, times: int) -> None:
    for _ in range(times):
        call()


def batch(call: W.Call, size: int) -> tuple[dict[str, float], dict[Func, float], dict[Func, str]]:
    """µs per call of a batch timed by the thread's CPU clock ("cpu"), then of one under
    cProfile: per group and per function (and the functions' names)."""
    start = time.thread_time()
    repeat(call, size)
    cpu, profile = time.thread_time() - start, cProfile.Profile()
    profile.runcall(repeat, call, size)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    owned = {func: seconds / size * 1e6 for func, seconds in owned_time(stats).items()}
    groups = dict.fromkeys(GROUPS, 0.0) | {"cpu": cpu / size * 1e6}
    for func, us in owned.items():
        groups[place(func[0])[0] or "other"] += us
    return groups, owned, qualified_names(profile)


def measure(bench: W.Bench, name: str, calls: int, rounds: int) -> dict[str, Any]:
    """Rounds of a traced and an untraced batch, in alternating order; per group (and for the
    unprofiled CPU time), the median over rounds of traced - untraced: a round the machine
    disturbed counts little. The top functions are the traced batches' means."""
    w, size = bench.workload(name), max(1, calls // rounds)
    bench.prepare(w)
    repeat(w.calls[W.BEDROCK_TRACE], 3)
    repeat(w.calls[W.UNTRACED], 3)
    diffs, traced, names = [], defaultdict[Func, float](float), dict[Func, str]()
    for index in range(rounds):
        order = (W.BEDROCK_TRACE, W.UNTRACED)[:: -1 if index % 2 else 1]
        done = {config: batch(w.calls[config], size) for config in order}
        bench.capture.clear()
        (groups, owned, named), (base, _, _) = done[W.BEDROCK_TRACE], done[W.UNTRACED]
        diffs.append({key: us - base[key] for key, us in groups.items()})
        names |= named
        for func, us in owned.items():
            traced[func] += us / rounds
    ranked = sorted(traced, key=traced.__getitem__, reverse=True)
    split = {key: statistics.median(diff[key] for diff in diffs) for key in diffs[0]}
    top = {
        group: [[names.get(f, f[2]), traced[f]] for f in ranked if place(f[0])[0] == group][:8]
        for group in GROUPS[:2]
    }
    return {"title": w.title, "calls": size * rounds, "split": split, "top": top}


def code_version() -> str:
    """The last commit that changed the profiled package, ``+changes`` if its files differ."""
    git = ("git", "-C", OURS)
    last = subprocess.run([*git, "log", "-1", "--format=%h", "--", "."], capture_output=True)
    diff = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True)
    return (last.stdout.decode().strip() or "unknown") + ("+changes" if diff.stdout else "")


def profile_run(label: str, quick: bool) -> dict[str, Any]:
    W.isolate_from_machine_config()
    packages = ("mlflow-tracing", "opentelemetry-sdk", "botocore")
    run: dict[str, Any] = {"label": label, "code": code_version(), "quick": quick}
    run["load"] = os.getloadavg()[0]  # the machine's load average (1 min) at the start
    run["versions"] = {"Python": platform.python_version()} | {
        package: metadata.version(package) for package in packages
    }
    run["workloads"] = {}
    with capture_traces() as capture:
        bench = W.Bench(capture, with_autolog=False)
        bench.check()
        for name, calls in WORKLOADS.items():
            calls, rounds = (max(2, calls // 10), 6) if quick else (calls, 20)
            run["workloads"][name] = measure(bench, name, calls, min(calls, rounds))
            print(f"{name}: {run['workloads'][name]['split']['cpu']:,.0f} µs", file=sys.stderr)
    return run


def render(runs: Sequence[dict[str, Any]]) -> str:
    """Markdown: the runs, their overhead splits side by side, then each run's top functions."""
    out = []
    for run in runs:
        versions = ", ".join(f"{name} {version}" for name, version in run["versions"].items())
        calls = ", ".join(str(w["calls"]) for w in run["workloads"].values())
        quick = " (quick)" if run["quick"] else ""
        out.append(
            f"- **{run['label']}**{quick}: package at {run['code']}, {versions}; calls: {calls}"
        )
        out[-1] += f"; load average at the start: {run['load']:.1f}"
    out += ["", "| workload | run | overhead | profiled | " + " | ".join(GROUPS) + " |"]
    out.append("|---|---|---:|---:|" + "---:|" * len(GROUPS))
    for name in WORKLOADS:
        for run in (run for run in runs if name in run["workloads"]):
            w = run["workloads"][name]
            split, cpu = w["split"], w["split"]["cpu"]
            total = sum(split[group] for group in GROUPS)
            profiled = f"{total:,.0f}" + (f" ({total / cpu:.1f}x)" if cpu > 0 else "")
            cells = [f"{split[g]:,.0f} ({split[g] / total:.0%})" for g in GROUPS]
            row = [w["title"], run["label"], f"{cpu:,.0f}", profiled, *cells]
            out.append("| " + " | ".join(row) + " |")
    for run in runs:
        out += ["", f"Top functions by profiled µs per call, run {run['label']}:", ""]
        out += ["| workload | bedrock_trace | MLflow |", "|---|---|---|"]
        for w in run["workloads"].values():
            tops = [", ".join(f"`{f}` {us:,.1f}" for f, us in w["top"][g]) for g in GROUPS[:2]]
            out.append(f"| {w['title']} | {tops[0]} | {tops[1]} |")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: a tenth of the calls")
    parser.add_argument("--label", default="now", help="the run's name in the tables")
    parser.add_argument("--out", type=Path, help="also write the run as JSON to this file")
    parser.add_argument("--compare", nargs="+", type=Path, help="render these JSON runs only")
    parser.add_argument("--docs", action="store_true", help="write the tables into the docs")
    args = parser.parse_args(argv)
    if args.compare:
        runs = [json.loads(path.read_text(encoding="utf-8")) for path in args.compare]
    else:
        runs = [profile_run(args.label, args.quick)]
        if args.out:
            args.out.write_text(json.dumps(runs[0], indent=1) + "\n", encoding="utf-8")
    text = render(runs)
    print(text)
    if args.docs:  # between the markers of docs/benchmarks.md
        head, rest = DOCS.read_text(encoding="utf-8").split(BEGIN, 1)
        DOCS.write_text(f"{head}{BEGIN}\n{text}{END}{rest.split(END, 1)[1]}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
