"""Benchmark: what tracing Bedrock Runtime calls costs, with bedrock_trace and with MLflow's own.

Run from the repository root::

    python bench/run.py            # full run (about 11 minutes); writes docs/benchmarks.md
    python bench/run.py --quick    # CI smoke (under 2 minutes); writes nothing unless --docs

In one process, for the same workloads (see ``bench/workloads.py``), it times the
configurations (untraced, bedrock_trace, autolog, the floor, the floor in situ, and the
OpenTelemetry peers of ``bench/peers.py`` where installed) interleaved round-robin: in every
round each workload runs a batch of calls under every configuration, in a fresh random
order, so that slow drift of a shared machine hits all configurations alike. Overheads are
paired within a round (traced minus untraced of the same round) before their median is taken.

All MLflow traces go to one in-memory destination (``bedrock_trace.testing.capture_traces``),
and each peer's spans to an in-memory exporter of its own; all are emptied after every batch,
so every configuration pays a like export cost.

It then measures memory with ``tracemalloc``: peak and retained after 10,000 traced calls
(bedrock_trace's and autolog's) and after 1,000 streams abandoned after two events, and
prints PASS/FAIL against the targets of the issue (it never fails the run on a missed target).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers as P
import workloads as W

import bedrock_trace
from bedrock_trace.testing import TraceCapture, capture_traces, flush

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"

TRACED = (W.BEDROCK_TRACE, W.AUTOLOG)
#: bedrock_trace's overhead is compared with these (each ratio with its bootstrap interval)
REFERENCES = (W.AUTOLOG, W.FLOOR, W.FLOOR_IN_SITU)
#: how configurations are headed in the tables
LABELS = {W.FLOOR_IN_SITU: "floor in situ"}

# Targets of the issue: per call, bedrock_trace's overhead <= this x autolog's, by workload; per
# stream event; at most this x the cheapest OpenTelemetry peer's overhead, on every workload.
AUTOLOG_PER_CALL = {
    "converse_small": 0.6,
    "invoke_model": 0.6,
    "converse_stream_100": 0.8,
    "invoke_stream_100": 0.8,
}
AUTOLOG_PER_EVENT = 0.3
CHEAPEST_PEER = 2.0
#: bytes per call that bedrock_trace's retained growth may exceed autolog's by: the noise of
#: the measurement (the untraced reference moves by a few bytes per call from run to run)
MEMORY_NOISE = 16


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How long and how hard to measure.

    Attributes:
        budget_s: wall-clock time given to the interleaved timing rounds.
        min_rounds: rounds to run even if the budget is exceeded.
        sample_ms: target duration of one timed batch (one sample) per configuration.
        memory_calls: traced calls for the memory measurement.
        memory_streams: abandoned streams for the memory measurement.
        bootstrap: resamples for the confidence intervals of ratios.
    """

    budget_s: float
    min_rounds: int
    sample_ms: float
    memory_calls: int
    memory_streams: int
    bootstrap: int


FULL = Settings(
    budget_s=540,
    min_rounds=60,
    sample_ms=20,
    memory_calls=10_000,
    memory_streams=1_000,
    bootstrap=1000,
)
QUICK = Settings(
    budget_s=35,
    min_rounds=12,
    sample_ms=8,
    memory_calls=2_000,
    memory_streams=400,
    bootstrap=300,
)


# --- statistics ----------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation between order statistics)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    """Median and the 10th-90th percentile range of a set of per-call times (µs)."""

    median: float
    p10: float
    p90: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(
            statistics.median(values), quantile(values, 0.1), quantile(values, 0.9), len(values)
        )

    def text(self, digits: int = 0) -> str:
        """``median [p10-p90]``."""
        return f"{self.median:,.{digits}f} [{self.p10:,.{digits}f}-{self.p90:,.{digits}f}]"


@dataclass
class Samples:
    """Per-call times (µs) by workload, configuration and round."""

    by_key: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, workload: str, config: str, value: float) -> None:
        self.by_key.setdefault((workload, config), []).append(value)

    def get(self, workload: str, config: str) -> list[float]:
        return self.by_key.get((workload, config), [])

    def overhead(self, workload: str, config: str) -> list[float]:
        """Paired per-round overheads: ``config`` minus untraced, round by round."""
        pairs = zip(self.get(workload, config), self.get(workload, W.UNTRACED), strict=True)
        return [t - u for t, u in pairs]


def ratio_ci(
    numerator: Callable[[Sequence[int]], float],
    denominator: Callable[[Sequence[int]], float],
    rounds: int,
    resamples: int,
    rng: random.Random,
) -> tuple[float, float, float]:
    """A ratio of two statistics of the rounds, with a 90% bootstrap interval over rounds.

    Resampling whole rounds keeps the pairing (a round's samples of every configuration
    stay together), which is what makes the drift cancel.
    """
    everything = list(range(rounds))
    point = numerator(everything) / denominator(everything)
    estimates = []
    for _ in range(resamples):
        pick = [rng.randrange(rounds) for _ in range(rounds)]
        den = denominator(pick)
        if den > 0:
            estimates.append(numerator(pick) / den)
    return point, quantile(estimates, 0.05), quantile(estimates, 0.95)


def median_of(values: Sequence[float]) -> Callable[[Sequence[int]], float]:
    """A statistic for :func:`ratio_ci`: the median of ``values`` at the picked rounds."""
    return lambda pick: statistics.median([values[i] for i in pick])


def slope_of(
    small: Sequence[float], large: Sequence[float], events: int
) -> Callable[[Sequence[int]], float]:
    """A statistic for :func:`ratio_ci`: per-event cost between two stream sizes."""
    return lambda pick: (
        (statistics.median([large[i] for i in pick]) - statistics.median([small[i] for i in pick]))
        / events
    )


# --- timing --------------------------------------------------------------------------------


def time_batch(call: W.Call, batch: int) -> float:
    """Per-call time (µs) of ``batch`` consecutive calls."""
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(batch):
        call()
    return (clock() - start) / batch / 1000


def calibrate(bench: W.Bench, settings: Settings) -> dict[str, int]:
    """Warm every call up and choose each workload's batch size (~``sample_ms`` per sample)."""
    batches = {}
    for w in bench.workloads:
        bench.prepare(w)
        for config in w.configs:
            with bench.batch(config):
                for _ in range(3 if w.events and w.events > 1000 else 20):
                    w.calls[config]()
        per_call_us = statistics.median(time_batch(w.calls[W.UNTRACED], 1) for _ in range(5))
        batches[w.name] = max(1, min(200, round(settings.sample_ms * 1000 / per_call_us)))
    bench.clear()
    return batches


def measure(bench: W.Bench, settings: Settings, batches: dict[str, int], seed: int) -> Samples:
    """Interleaved rounds until the time budget is spent; one sample per workload and config."""
    rng = random.Random(seed)
    samples = Samples()
    deadline = time.monotonic() + settings.budget_s
    rounds = 0
    while rounds < settings.min_rounds or time.monotonic() < deadline:
        order = list(bench.workloads)
        rng.shuffle(order)
        for w in order:
            bench.prepare(w)
            configs = w.configs
            rng.shuffle(configs)
            for config in configs:
                with bench.batch(config):
                    samples.add(w.name, config, time_batch(w.calls[config], batches[w.name]))
        rounds += 1
        if rounds % 10 == 0:
            print(f"  round {rounds}, {deadline - time.monotonic():.0f} s left", file=sys.stderr)
    return samples


# --- memory --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryResult:
    """Memory of one scenario, relative to the state right before it (bytes).

    Attributes:
        peak: highest traced memory during the run, above the starting point.
        retained: traced memory still held after the run (caches cleared, garbage collected,
            the reaper flushed), above the starting point.
        growth: retained after the second half minus retained after the first half: memory
            that grows with the number of calls.
        open_traces: traces MLflow still holds open afterwards.
        rss_delta: change of the process's resident set size (coarse; includes allocator slack).
    """

    label: str
    count: int
    peak: int
    retained: int
    growth: int
    open_traces: int
    rss_delta: int
    top_growth: tuple[str, ...] = ()

    @property
    def growth_per_call(self) -> float:
        """Bytes of growth per call of the second half."""
        return self.growth / max(1, self.count - self.count // 2)

    @property
    def ok(self) -> bool:
        """No open trace, and growth under 64 bytes per call.

        One retained trace of these calls is several KiB, so 64 B per call would be less than
        one trace in a hundred calls; below that, the figure is interpreter noise (the
        untraced reference shows the same order).
        """
        return self.growth_per_call < 64 and self.open_traces == 0


FRAMES = 4  # frames kept per allocation: enough to see who allocated, cheap enough to run


def short_frame(frame: tracemalloc.Frame) -> str:
    """``package/module.py:line`` of a tracemalloc frame."""
    parts = Path(frame.filename).parts
    return f"{'/'.join(parts[-2:])}:{frame.lineno}"


def rss_bytes() -> int:
    """The resident set size of this process, from /proc (0 where unavailable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def settle(capture: TraceCapture) -> int:
    """End what the reaper holds, collect garbage, drop captured traces; traced bytes now.

    The order matters: spans ended by the reaper (abandoned streams) reach the capture when
    they end, so the capture is emptied last.
    """
    for _ in range(2):
        gc.collect()
        flush()
    capture.clear()
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def memory_run(capture: TraceCapture, label: str, call: W.Call, count: int) -> MemoryResult:
    """Run ``call`` ``count`` times under tracemalloc; see :class:`MemoryResult`."""
    started = time.monotonic()
    try:
        return _memory_run(capture, label, call, count)
    finally:
        print(f"  {label}: {time.monotonic() - started:.1f} s", file=sys.stderr)


def _memory_run(capture: TraceCapture, label: str, call: W.Call, count: int) -> MemoryResult:
    for _ in range(50):  # warm caches (botocore, MLflow) before the starting point
        call()
    tracemalloc.start(FRAMES)
    try:
        start = settle(capture)
        rss_start = rss_bytes()
        tracemalloc.reset_peak()
        half = count // 2
        for index in range(count):
            call()
            if index % 250 == 249:
                capture.clear()  # the capture keeps traces by design; a real exporter would not
            if index == half - 1:
                middle = settle(capture)
                middle_snapshot = tracemalloc.take_snapshot()
        peak = tracemalloc.get_traced_memory()[1]
        end = settle(capture)
        growth = end - middle
        top: tuple[str, ...] = ()
        if growth > 16 * 1024:  # worth showing where it went
            diff = tracemalloc.take_snapshot().compare_to(middle_snapshot, "traceback")
            by_site: dict[str, list[int]] = {}
            for stat in diff:
                site = " ← ".join(f"`{short_frame(f)}`" for f in list(reversed(stat.traceback))[:3])
                total = by_site.setdefault(site, [0, 0])
                total[0] += stat.size_diff
                total[1] += stat.count_diff
            top = tuple(
                f"{size:+,} B, {count:+,} blocks: {site}"
                for site, (size, count) in sorted(by_site.items(), key=lambda kv: -kv[1][0])[:3]
            )
        return MemoryResult(
            label,
            count,
            peak - start,
            end - start,
            growth,
            capture.open_traces(),
            rss_bytes() - rss_start,
            top,
        )
    finally:
        tracemalloc.stop()


def abandon(w: W.Workload, client: Any) -> W.Call:
    """A call that reads two events of the stream, then drops the stream and its iterator."""
    method = getattr(client, w.method)
    key = "stream" if w.consume == "stream" else "body"

    def call() -> None:
        events = iter(method(**w.kwargs)[key])
        next(events)
        next(events)

    return call


def alternate(*calls: W.Call) -> W.Call:
    """A call that runs each of ``calls`` in turn, one per invocation."""
    state = {"next": 0}

    def call() -> None:
        calls[state["next"] % len(calls)]()
        state["next"] += 1

    return call


BT_CALLS = "bedrock_trace converse calls"
AUTOLOG_CALLS = "autolog converse calls (reference)"


def measure_memory(bench: W.Bench, settings: Settings) -> list[MemoryResult]:
    """Peak and retained memory: traced calls, abandoned streams (autolog's for reference)."""
    c, capture = bench.clients, bench.capture
    small = bench.workload("converse_small")
    streams = [bench.workload("converse_stream_100"), bench.workload("invoke_stream_100")]
    bench.prepare(streams[0])
    calls, abandoned = settings.memory_calls, settings.memory_streams
    results = [
        memory_run(capture, "untraced converse calls (reference)", small.calls[W.UNTRACED], calls),
        memory_run(capture, BT_CALLS, small.calls[W.BEDROCK_TRACE], calls),
        memory_run(capture, AUTOLOG_CALLS, small.calls[W.AUTOLOG], calls),
        memory_run(
            capture,
            "bedrock_trace streams abandoned after 2 events",
            alternate(*(abandon(w, c.traced) for w in streams)),
            abandoned,
        ),
    ]
    # Last: autolog never ends an abandoned stream's span, so its traces stay open for good.
    results.append(
        memory_run(
            capture,
            "autolog streams abandoned after 2 events (reference)",
            alternate(*(abandon(w, c.autolog) for w in streams)),
            abandoned,
        )
    )
    return results


# --- the report ----------------------------------------------------------------------------


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine() -> list[tuple[str, str]]:
    """CPU model, cores, Python and library versions."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = fields.get("model name") or platform.processor() or "unknown"
    details = [f"{k} {fields[k]}" for k in ("cpu MHz", "cache size") if k in fields]
    if details:
        cpu += f" ({', '.join(details)})"
    mlflow_dist = "mlflow" if package_version("mlflow") != "not installed" else "mlflow-tracing"
    return [
        ("CPU", cpu),
        ("cores", f"{os.cpu_count()} logical (affinity: {len(os.sched_getaffinity(0))})"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("botocore / boto3", f"{package_version('botocore')} / {package_version('boto3')}"),
        (mlflow_dist, package_version(mlflow_dist)),
        ("opentelemetry-sdk", package_version("opentelemetry-sdk")),
        *((f"{name} (peer)", package_version(dist)) for name, dist in P.DISTRIBUTIONS.items()),
        ("bedrock-trace", f"{bedrock_trace.__version__}, {source_revision()}"),
    ]


def source_revision() -> str:
    """The git commit of the checkout being measured, and whether it has local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "bedrock_trace"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "commit unknown"
    return f"commit {head}" + (" with local changes to bedrock_trace/" if dirty else "")


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else "PASS" if ok else "FAIL"


@dataclass
class Comparison:
    """Ratios of bedrock_trace's statistic to the other configurations' (see Report.compare).

    Attributes:
        cells: the table cells: one per reference, then the cheapest peer's (named).
        vs_autolog: the ratio to autolog's, with its interval.
        vs_peer: the ratio to the cheapest peer's (None when no peer was measured).
    """

    cells: list[str]
    vs_autolog: tuple[float, float, float]
    vs_peer: tuple[float, float, float] | None = None


@dataclass
class Report:
    """Everything measured, rendered as markdown tables (printed and written to the docs)."""

    settings: Settings
    mode: str
    bench: W.Bench
    samples: Samples
    batches: dict[str, int]
    memory: list[MemoryResult]
    seed: int
    elapsed_s: float
    targets: list[tuple[str, str, str, bool | None]] = field(default_factory=list)

    def rounds(self) -> int:
        return min(len(v) for v in self.samples.by_key.values())

    def ci(
        self,
        num: Callable[[Sequence[int]], float],
        den: Callable[[Sequence[int]], float],
    ) -> tuple[float, float, float]:
        rng = random.Random(self.seed)
        return ratio_ci(num, den, self.rounds(), self.settings.bootstrap, rng)

    # Tables -----------------------------------------------------------------------------

    def configs(self) -> list[str]:
        """The configurations measured, in canonical order."""
        return [c for c in W.CONFIGS if any(c in w.calls for w in self.bench.workloads)]

    def peers(self) -> list[str]:
        return [c for c in self.configs() if c in P.NAMES]

    def added(self, w: W.Workload, config: str) -> list[float]:
        """What ``config`` adds to a call of ``w``, per round: its overhead (floor: its time)."""
        if config == W.FLOOR:  # the floor's own time: nothing to subtract
            return self.samples.get(w.name, config)
        return self.samples.overhead(w.name, config)

    def compare(self, stats: dict[str, Callable[[Sequence[int]], float]]) -> Comparison:
        """bedrock_trace's statistic against each reference's and the cheapest peer's."""
        bt = stats[W.BEDROCK_TRACE]
        ratios = [self.ci(bt, stats[c]) for c in REFERENCES]
        comparison = Comparison([fmt_ratio(r) for r in ratios], ratios[0])
        if self.peers():
            everything = list(range(self.rounds()))
            cheapest = min(self.peers(), key=lambda c: stats[c](everything))
            comparison.vs_peer = self.ci(bt, stats[cheapest])
            comparison.cells.append(f"{fmt_ratio(comparison.vs_peer)} ({cheapest})")
        return comparison

    def header(
        self, first: str, shown: Sequence[str], suffix: str = "", last: Sequence[str] = ()
    ) -> list[str]:
        """A table's header and alignment rows: a column per configuration shown (with
        ``suffix``, except the floor's own time), the ratio columns, then ``last``."""
        columns = [c if c == W.FLOOR else f"{LABELS.get(c, c)}{suffix}" for c in shown]
        columns += ["bt / autolog (90% CI)", "bt / floor (90% CI)", "bt / floor in situ"]
        if self.peers():
            columns.append("bt / cheapest peer (90% CI)")
        columns += last
        return [f"| {first} | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]

    def times_table(self) -> list[str]:
        configs = self.configs()
        rows = [
            "| workload | batch | " + " | ".join(LABELS.get(c, c) for c in configs) + " |",
            "|---|---:|" + "---:|" * len(configs),
        ]
        for w in self.bench.workloads:
            cells = []
            for config in configs:
                values = self.samples.get(w.name, config)
                cells.append(Summary.of(values).text() if values else "n/a")
            rows.append(f"| {w.title} | {self.batches[w.name]} | " + " | ".join(cells) + " |")
        return rows

    def overhead_table(self) -> list[str]:
        shown = [c for c in self.configs() if c != W.UNTRACED]
        rows = self.header("workload", shown, " overhead")
        for w in self.bench.workloads:
            if W.AUTOLOG not in w.calls:
                continue
            added = {c: self.added(w, c) for c in shown}
            comparison = self.compare({c: median_of(v) for c, v in added.items()})
            rows.append(
                f"| {w.title} | "
                + " | ".join([*(Summary.of(v).text() for v in added.values()), *comparison.cells])
                + " |"
            )
            vs_al, vs_peer = comparison.vs_autolog, comparison.vs_peer
            if w.name in AUTOLOG_PER_CALL:
                limit = AUTOLOG_PER_CALL[w.name]
                target = f"overhead ≤ {limit} x autolog's"
                self.targets.append((w.title, target, fmt_ratio(vs_al), vs_al[0] <= limit))
            if vs_peer is not None:
                self.targets.append(
                    (
                        w.title,
                        f"overhead ≤ {CHEAPEST_PEER:g} x the cheapest OpenTelemetry peer's",
                        comparison.cells[-1],
                        vs_peer[0] <= CHEAPEST_PEER,
                    )
                )
        return rows

    def stream_kinds(self) -> list[tuple[str, W.Workload, W.Workload]]:
        kinds = []
        for prefix, title in (
            ("converse_stream", "converse_stream"),
            ("invoke_stream", "invoke_model_with_response_stream"),
        ):
            sized = sorted(
                (w for w in self.bench.workloads if w.name.startswith(prefix)),
                key=lambda w: w.events or 0,
            )
            if len(sized) >= 2:
                kinds.append((title, sized[0], sized[-1]))
        return kinds

    def per_event_table(self) -> list[str]:
        shown = [c for c in self.configs() if c != W.UNTRACED]
        rows = self.header("stream", shown, last=["bt, overhead / events at the larger size"])
        everything = list(range(self.rounds()))
        for title, small, large in self.stream_kinds():
            extra = (large.events or 0) - (small.events or 0)
            stats = {c: slope_of(self.added(small, c), self.added(large, c), extra) for c in shown}
            comparison = self.compare(stats)
            vs_al = comparison.vs_autolog
            naive = statistics.median(self.samples.overhead(large.name, W.BEDROCK_TRACE))
            rows.append(
                f"| {title} | "
                + " | ".join([*(f"{stats[c](everything):.2f}" for c in shown), *comparison.cells])
                + f" | {naive / (large.events or 1):.2f} |"
            )
            self.targets.append(
                (
                    title,
                    f"per-event overhead ≤ {AUTOLOG_PER_EVENT} x autolog's",
                    fmt_ratio(vs_al),
                    vs_al[0] <= AUTOLOG_PER_EVENT,
                )
            )
        return rows

    def s3_table(self) -> list[str]:
        w = self.bench.workload("s3_list_buckets")
        untraced = self.samples.get(w.name, W.UNTRACED)
        overhead = self.samples.overhead(w.name, W.BEDROCK_TRACE)
        rel = self.ci(median_of(overhead), median_of(untraced))
        # One-sided: tracing cannot make S3 faster, so a negative median is noise.
        self.targets.append(
            (
                w.title,
                "overhead ≤ 2% of untraced",
                f"{rel[0]:+.1%} [{rel[1]:+.1%}, {rel[2]:+.1%}]",
                rel[0] <= 0.02,
            )
        )
        return [
            "| workload | untraced | registered session | overhead | "
            "overhead / untraced (90% CI) |",
            "|---|---:|---:|---:|---:|",
            f"| {w.title} | {Summary.of(untraced).text()} | "
            f"{Summary.of(self.samples.get(w.name, W.BEDROCK_TRACE)).text()} | "
            f"{Summary.of(overhead).text(1)} | {rel[0]:+.1%} [{rel[1]:+.1%}, {rel[2]:+.1%}] |",
        ]

    def memory_table(self) -> list[str]:
        rows = [
            "| scenario | count | peak | retained | growth 2nd half | per call | open traces | "
            "RSS Δ | verdict |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for m in self.memory:
            judged = "bedrock_trace" in m.label
            rows.append(
                f"| {m.label} | {m.count:,} | {kib(m.peak)} | {kib(m.retained)} | "
                f"{kib(m.growth)} | {m.growth_per_call:,.0f} B | {m.open_traces} | "
                f"{kib(m.rss_delta)} | "
                f"{verdict(m.ok) if judged else 'reference'} |"
            )
            if judged:
                self.targets.append(
                    (
                        m.label,
                        "no retained growth (< 64 B/call), no open trace",
                        f"{m.growth_per_call:,.1f} B/call, {m.open_traces} open",
                        m.ok,
                    )
                )
        by_label = {m.label: m for m in self.memory}
        if BT_CALLS in by_label and AUTOLOG_CALLS in by_label:
            bt, al = by_label[BT_CALLS].growth_per_call, by_label[AUTOLOG_CALLS].growth_per_call
            self.targets.append(
                (
                    BT_CALLS,
                    f"retained growth per call ≤ autolog's (+ {MEMORY_NOISE} B of noise)",
                    f"{bt:,.1f} B/call; autolog {al:,.1f} B/call",
                    bt <= al + MEMORY_NOISE,
                )
            )
        details = [(m.label, line) for m in self.memory for line in m.top_growth]
        if details:
            rows += [
                "",
                "Largest growth between the two halves (allocation site, newest frame first):",
                "",
            ]
            rows += [f"- {label}: {line}" for label, line in details]
        return rows

    def peers_note(self) -> str:
        """Which OpenTelemetry peers were measured, at which versions, and which not (why)."""
        measured = [
            f"`{name}` ({P.DISTRIBUTIONS[name]} {package_version(P.DISTRIBUTIONS[name])})"
            for name in self.peers()
        ]
        missing = self.bench.clients.missing_peers
        text = "OpenTelemetry peers (informative; each into a TracerProvider of its own): "
        text += ", ".join(measured) if measured else "none"
        if missing:
            text += ". Not measured: " + ", ".join(
                f"`{name}` ({P.DISTRIBUTIONS[name]}: {why})" for name, why in missing.items()
            )
            text += " (install them with `pip install -r bench/requirements-peers.txt`)"
            if not measured:
                self.targets.append(
                    (
                        "every workload",
                        f"overhead ≤ {CHEAPEST_PEER:g} x the cheapest OpenTelemetry peer's",
                        "no peer installed",
                        None,
                    )
                )
        return text + "."

    def targets_table(self) -> list[str]:
        rows = ["| what | target | measured | verdict |", "|---|---|---|---|"]
        rows += [
            f"| {what} | {target} | {value} | {verdict(ok)} |"
            for what, target, value, ok in self.targets
        ]
        return rows

    def render(self) -> str:
        """The whole results section, in markdown."""
        self.targets = []
        s = self.settings
        parts = [
            f"_Generated by `python bench/run.py{' --quick' if self.mode == 'quick' else ''}` "
            f"on {time.strftime('%Y-%m-%d %H:%M %Z')}: {self.rounds()} interleaved rounds "
            f"in {self.elapsed_s / 60:.1f} min (timing budget {s.budget_s:.0f} s, "
            f"seed {self.seed})._",
            "",
            "### Machine",
            "",
            "| | |",
            "|---|---|",
            *[f"| {k} | {v} |" for k, v in machine()],
            "",
            "### Time per call (µs): median [p10-p90] over rounds",
            "",
            "Each sample is the mean of one batch of consecutive calls (batch size per "
            "workload). `floor` is the MLflow span alone, without botocore.",
            "",
            *self.times_table(),
            "",
            "### Overhead per call (µs): traced - untraced, paired within each round",
            "",
            "Ratios are of medians, with a 90% bootstrap interval over rounds. `floor` is the "
            "floor's own time (it has no botocore to subtract). `floor in situ` is the same "
            "MLflow work done around the untraced call by a minimal tracer that maps nothing "
            "(its time minus untraced, paired): the floor plus what interleaving with botocore "
            "costs. The floor columns are informative; the targets are judged against autolog "
            "and against the cheapest OpenTelemetry peer (the peer named in the cell).",
            "",
            self.peers_note(),
            "",
            *self.overhead_table(),
            "",
            "### Streams: overhead per event (µs)",
            "",
            "Per-event cost is the slope between the two stream sizes: (overhead at the larger "
            "size - overhead at the smaller) / (difference in events), which leaves out the "
            "per-call part. The last column is the plain quotient at the larger size.",
            "",
            *self.per_event_table(),
            "",
            "### Other services in a registered session",
            "",
            *self.s3_table(),
            "",
            "### Memory (tracemalloc)",
            "",
            "Relative to the state right before each scenario. `retained`: still allocated after "
            "the run, once the captured traces are dropped, garbage collected and "
            "`bedrock_trace.testing.flush()` has ended what the reaper holds. `growth 2nd "
            "half`: retained after all calls - retained after the first half; this is what "
            "would grow without bound (the verdict allows < 64 B per call: one retained trace "
            "is several KiB). Streams are 100-event streams (converse_stream and "
            "invoke_model_with_response_stream alternately) dropped after two events. RSS Δ is "
            "coarse (allocator arenas are not returned to the OS).",
            "",
            *self.memory_table(),
            "",
            "### Targets",
            "",
            *self.targets_table(),
        ]
        return "\n".join(parts) + "\n"


def kib(value: int) -> str:
    return f"{value / 1024:,.1f} KiB"


def fmt_ratio(r: tuple[float, float, float]) -> str:
    return f"{r[0]:.2f} [{r[1]:.2f}, {r[2]:.2f}]"


DOC_TEMPLATE = """# Benchmarks: the cost of tracing

What tracing a Bedrock Runtime call costs with `bedrock_trace`, compared with no tracing,
with MLflow's own `mlflow.bedrock.autolog()`, and with the floor: the same MLflow span made
directly, which any MLflow-based tracer has to pay.

See `bench/run.py` for the method and `bench/profile_hot_paths.py` for the profile.

## Results

{begin}
{end}
"""


def write_docs(path: Path, results: str) -> None:
    """Put ``results`` between the markers of ``path`` (created from a template if missing).

    Everything outside the markers (the hand-written analysis) is kept.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN not in text or END not in text:
        text = DOC_TEMPLATE.format(begin=BEGIN, end=END)
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{results}{END}{tail}", encoding="utf-8")


# --- main ----------------------------------------------------------------------------------


def log(started: float, message: str) -> None:
    """Progress on stderr, with the time since the start."""
    print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run, under 2 minutes")
    parser.add_argument("--budget", type=float, help="seconds for the timing rounds")
    parser.add_argument("--seed", type=int, default=20240501, help="order of the rounds")
    parser.add_argument(
        "--docs",
        type=Path,
        help=f"write the results to this markdown file (default for a full run: {DOCS})",
    )
    parser.add_argument("--no-docs", action="store_true", help="write no markdown file")
    parser.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        help="--peers: measure the OpenTelemetry peers, and fail if one is not installed; "
        "--no-peers: leave them out (default: those installed)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.budget is not None:
        settings = Settings(**{**settings.__dict__, "budget_s": args.budget})
    docs = None if args.no_docs else (args.docs or (None if args.quick else DOCS))
    started = time.monotonic()
    W.isolate_from_machine_config()
    with capture_traces() as capture:
        bench = W.Bench(capture, peers=() if args.peers is False else P.NAMES)
        if args.peers and bench.clients.missing_peers:
            raise SystemExit(f"--peers: not measurable: {bench.clients.missing_peers}")
        bench.check()
        log(started, "checked: every configuration records exactly its own spans")
        batches = calibrate(bench, settings)
        log(started, f"timing for {settings.budget_s:.0f} s; batch sizes {batches}")
        samples = measure(bench, settings, batches, args.seed)
        log(started, "memory")
        memory = measure_memory(bench, settings)
        log(started, "report")
        report = Report(
            settings,
            "quick" if args.quick else "full",
            bench,
            samples,
            batches,
            memory,
            args.seed,
            time.monotonic() - started,
        )
        results = report.render()
    print(results)
    if docs is not None:
        write_docs(docs, results)
        print(f"written to {docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
