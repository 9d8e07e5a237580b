"""Where bedrock_trace's time goes, per call and per stream event.

Run from the repository root::

    python bench/profile_hot_paths.py            # prints markdown tables
    python bench/profile_hot_paths.py --docs     # also writes them into docs/benchmarks.md

Three views, all of the ``bedrock_trace`` configuration of ``bench/workloads.py``:

1. **In-situ timers** (no profiler): bedrock_trace's handlers, and the MLflow calls they make,
   are wrapped (in this process only; no file is changed) with ``perf_counter_ns`` probes
   before ``register`` binds them. Overhead per call (traced - untraced, interleaved) is then
   split into: MLflow span work, bedrock_trace's own mapping, and what lies outside the
   handlers (botocore dispatching them, garbage collection, colder caches).
2. **cProfile**: bedrock_trace's own functions by self time, and the functions outside the
   package it calls, by inclusive time (profiled µs: inflated by the profiler, good for
   shares, not for absolute numbers).
3. **Prototypes**: micro-benchmarks of the avoidable work found, as it is done now and as
   it could be done (the alternatives are written here, not in the package).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import cProfile
import functools
import importlib
import json
import os
import pstats
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlflow
import workloads as W
from mlflow.entities import LiveSpan, SpanEvent

import bedrock_trace
from bedrock_trace import _accumulators, _payload
from bedrock_trace.testing import capture_traces

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:profile:begin -->", "<!-- bench:profile:end -->"
PACKAGE_DIR = str(Path(bedrock_trace.__file__).resolve().parent)


# --- in-situ probes ------------------------------------------------------------------------


@dataclass
class Probe:
    """Accumulated inclusive time and count of one wrapped callable."""

    label: str
    ns: int = 0
    count: int = 0


@dataclass
class Probes:
    """Wraps callables with timers; ``reset`` between scenarios, ``per`` to read them."""

    probes: dict[str, Probe] = field(default_factory=dict)
    wrapper_ns: float = 0.0
    installed: list[tuple[Any, str, Any]] = field(default_factory=list)

    def wrap(self, owner: Any, name: str, label: str) -> None:
        """Replace ``owner.name`` with a timed wrapper (a function or method)."""
        original = getattr(owner, name)
        probe = self.probes.setdefault(label, Probe(label))
        clock = time.perf_counter_ns

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return original(*args, **kwargs)
            finally:
                probe.ns += clock() - start
                probe.count += 1

        timed.__wrapped__ = original  # type: ignore[attr-defined]
        self.installed.append((owner, name, original))
        setattr(owner, name, timed)

    def calibrate(self) -> None:
        """The wrapper's own cost, subtracted from the inner probes of a nesting."""

        class Box:
            @staticmethod
            def nothing() -> None:
                return None

        bare = min(timeit.repeat(Box.nothing, number=20_000, repeat=7))
        self.wrap(Box, "nothing", "_calibration")
        wrapped = min(timeit.repeat(Box.nothing, number=20_000, repeat=7))
        self.wrapper_ns = (wrapped - bare) / 20_000 * 1e9
        del self.probes["_calibration"]
        self.installed.clear()

    def uninstall(self) -> None:
        """Put every wrapped callable back (handlers already bound keep their wrappers)."""
        for owner, name, original in reversed(self.installed):
            setattr(owner, name, original)
        self.installed.clear()

    def reset(self) -> None:
        for probe in self.probes.values():
            probe.ns = probe.count = 0

    def per(self, label: str, units: int) -> float:
        """µs per unit (call or event) spent inside ``label`` (0 for a probe not installed)."""
        probe = self.probes.get(label)
        return probe.ns / max(units, 1) / 1000 if probe else 0.0

    def count(self, label: str) -> int:
        probe = self.probes.get(label)
        return probe.count if probe else 0


# Labels of the probed parts, used by the breakdowns below.
HANDLER_PARAMS = "handler: before-parameter-build"
HANDLER_BEFORE = "handler: before-call"
HANDLER_AFTER = "handler: after-call"
MLFLOW_OPEN = "MLflow: open the span"
MLFLOW_END = "MLflow: end the span"
JSON_SAFE = "json_safe"
CONTENT = "content controls"
ON_EVENT = "StreamState.on_event"
STREAM_END = "StreamState.end"
ACC_ADD = "accumulator.add"
DUMPS = "_accumulators._dumps"
EVENT_TEXT = "content controls (event)"
ADD_EVENT = "LiveSpan.add_event"


def _resolve(path: str) -> Any:
    """``package.module`` or ``package.module:Class``; None when it does not exist (any more)."""
    module_name, _, class_name = path.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return None
    return getattr(module, class_name, None) if class_name else module


def install_probes() -> tuple[Probes, list[str]]:
    """Wrap the hot paths; must run before ``bedrock_trace.register`` binds the handlers.

    The package changes: a probe whose target no longer exists is skipped (and listed), and
    module-level functions are wrapped in every module of the package that imported them by
    name. Returns the probes and the names of the skipped targets.
    """
    p = Probes()
    p.calibrate()
    skipped: list[str] = []

    def method(path: str, name: str, label: str) -> bool:
        owner = _resolve(path)
        if owner is None or not hasattr(owner, name):
            skipped.append(f"{path}.{name}")
            return False
        p.wrap(owner, name, label)
        return True

    def function(path: str, name: str, label: str) -> bool:
        home = _resolve(path)
        original = getattr(home, name, None) if home is not None else None
        if original is None:
            skipped.append(f"{path}.{name}")
            return False
        holders = [home] + [
            module
            for module_name, module in list(sys.modules.items())
            if module_name.startswith("bedrock_trace.")
            and module is not home
            and getattr(module, name, None) is original
        ]
        for holder in holders:
            p.wrap(holder, name, label)
        return True

    method("bedrock_trace._handlers:Handlers", "on_before_parameter_build", HANDLER_PARAMS)
    method("bedrock_trace._handlers:Handlers", "on_before_call", HANDLER_BEFORE)
    method("bedrock_trace._handlers:Handlers", "on_after_call", HANDLER_AFTER)
    # MLflow's part: bedrock_trace's thin span helpers if it has them, else MLflow itself.
    if not function("bedrock_trace._spans", "start", MLFLOW_OPEN):
        p.wrap(mlflow, "start_span_no_context", MLFLOW_OPEN)
        p.wrap(mlflow, "get_current_active_span", MLFLOW_OPEN)
    if not function("bedrock_trace._spans", "end", MLFLOW_END):
        p.wrap(LiveSpan, "end", MLFLOW_END)
    function("bedrock_trace._payload", "json_safe", JSON_SAFE)
    function("bedrock_trace._content", "prepare", CONTENT)
    function("bedrock_trace._content", "event_text", EVENT_TEXT)
    method("bedrock_trace._streams:StreamState", "on_event", ON_EVENT)
    method("bedrock_trace._streams:StreamState", "end", STREAM_END)
    method("bedrock_trace._accumulators:ConverseAccumulator", "add", ACC_ADD)
    method("bedrock_trace._accumulators:ChunkAccumulator", "add", ACC_ADD)
    function("bedrock_trace._accumulators", "_dumps", DUMPS)
    p.wrap(LiveSpan, "add_event", ADD_EVENT)
    return p, skipped


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Interleaved:
    """Median overhead per call over rounds, and the median probe times of the same rounds."""

    overhead_us: float
    probe_us: dict[str, float]
    probe_counts: dict[str, int]

    def part(self, label: str) -> float:
        """Median µs per call spent inside ``label`` (0 when not probed)."""
        return self.probe_us.get(label, 0.0)


def interleaved(
    bench: W.Bench, untraced: W.Call, traced: W.Call, batch: int, rounds: int, probes: Probes
) -> Interleaved:
    """Alternate batches of ``untraced`` and ``traced``; per-call medians over the rounds.

    Probe times are read per round (traced batch only), so that they are medians of the same
    rounds as the overhead and add up with it.
    """
    clock = time.perf_counter_ns
    diffs: list[float] = []
    parts: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for index in range(rounds):
        times = {}
        for call in (untraced, traced) if index % 2 else (traced, untraced):
            if call is traced:
                probes.reset()
            start = clock()
            for _ in range(batch):
                call()
            times[call] = clock() - start
            if call is traced:
                for label, probe in probes.probes.items():
                    parts.setdefault(label, []).append(probe.ns / batch / 1000)
                    counts[label] = probe.count // batch
        bench.capture.clear()
        diffs.append((times[traced] - times[untraced]) / batch / 1000)
    return Interleaved(
        statistics.median(diffs),
        {label: statistics.median(values) for label, values in parts.items()},
        counts,
    )


@dataclass
class Row:
    part: str
    us: float
    note: str = ""


def _warm(bench: W.Bench, w: W.Workload, times: int) -> None:
    bench.prepare(w)
    for _ in range(times):
        for config in (W.UNTRACED, W.BEDROCK_TRACE, W.FLOOR_IN_SITU):
            w.calls[config]()
    bench.capture.clear()


def breakdown_call(bench: W.Bench, probes: Probes, name: str, rounds: int) -> list[Row]:
    """Split one non-streaming workload's per-call overhead into its parts."""
    w = bench.workload(name)
    _warm(bench, w, 30)
    batch = 20 if name != "converse_large" else 5
    untraced = w.calls[W.UNTRACED]
    in_situ = interleaved(bench, untraced, w.calls[W.FLOOR_IN_SITU], batch, rounds, probes)
    run = interleaved(bench, untraced, w.calls[W.BEDROCK_TRACE], batch, rounds, probes)
    part = run.part
    params, before, after = part(HANDLER_PARAMS), part(HANDLER_BEFORE), part(HANDLER_AFTER)
    opened, ended = part(MLFLOW_OPEN), part(MLFLOW_END)
    rows = [
        Row("overhead per call (traced - untraced)", run.overhead_us),
        Row("  before-parameter-build handler", params, "shallow copy of the kwargs, `Call`"),
        Row("  before-call handler", before),
        Row("    MLflow: open the span", opened, "span, parent lookup, inputs JSON, attributes"),
        Row("    bedrock_trace's own", before - opened, "inputs mapping, content controls"),
        Row("  after-call handler", after),
        Row("    MLflow: end the span", ended, "outputs JSON, attributes, status, export"),
        Row("    bedrock_trace's own", after - ended, "response mapping, content controls"),
        Row(
            "  outside the handlers",
            run.overhead_us - params - before - after,
            "botocore dispatching 4 more handlers; GC and colder caches",
        ),
        Row(
            "included above: `json_safe` walks",
            part(JSON_SAFE),
            f"{run.probe_counts.get(JSON_SAFE, 0)} per call",
        ),
    ]
    if run.probe_counts.get(CONTENT):
        rows.append(
            Row(
                "included above: content controls (`_content.prepare`)",
                part(CONTENT),
                "default config: size estimate of inputs and outputs",
            )
        )
    rows.append(
        Row(
            "for reference: floor in situ overhead",
            in_situ.overhead_us,
            "the same MLflow span around the untraced call, no mapping",
        )
    )
    return rows


def breakdown_stream(bench: W.Bench, probes: Probes, name: str, rounds: int) -> list[Row]:
    """Split one streaming workload's overhead into per-event and per-stream parts."""
    w = bench.workload(name)
    _warm(bench, w, 2)
    n = w.events or 1
    untraced = w.calls[W.UNTRACED]
    in_situ = interleaved(bench, untraced, w.calls[W.FLOOR_IN_SITU], 1, rounds, probes)
    run = interleaved(bench, untraced, w.calls[W.BEDROCK_TRACE], 1, rounds, probes)

    def ev(label: str) -> float:  # µs per event
        return run.part(label) / n

    on_event, add, add_event, text = ev(ON_EVENT), ev(ACC_ADD), ev(ADD_EVENT), ev(EVENT_TEXT)
    per_stream = run.part(HANDLER_PARAMS) + run.part(HANDLER_BEFORE) + run.part(HANDLER_AFTER)
    end = run.part(STREAM_END)
    overhead = run.overhead_us / n
    rows = [
        Row("overhead per event: (traced - untraced) / events", overhead),
        Row("  StreamState.on_event", on_event),
        Row("    accumulator.add", add, "rebuild the response; event JSON text"),
    ]
    if run.probe_counts.get(DUMPS):
        rows.append(Row("      _accumulators._dumps", ev(DUMPS), "`json_safe` walk + `json.dumps`"))
    if run.probe_counts.get(EVENT_TEXT):
        rows.append(
            Row("    content controls (`_content.event_text`)", text, "default config: a check")
        )
    rows += [
        Row("    LiveSpan.add_event", add_event, "MLflow/OTel: the span event"),
        Row(
            "    the rest of on_event",
            on_event - add - add_event - text,
            "`SpanEvent(...)`, counters, cap check",
        ),
        Row(
            "  outside on_event",
            overhead - on_event - (per_stream + end) / n,
            "wrapper generator, guard, GC, colder caches",
        ),
        Row(
            "  call handlers and hand-over, per event",
            per_stream / n,
            f"{per_stream:,.0f} µs per stream",
        ),
        Row(
            "  StreamState.end, per event",
            end / n,
            f"{end:,.0f} µs per stream: rebuild, outputs JSON, end",
        ),
        Row(
            "for reference: floor in situ overhead per event",
            in_situ.overhead_us / n,
            "same MLflow span and events, no mapping",
        ),
    ]
    return rows


def table(title: str, unit: str, rows: Sequence[Row]) -> list[str]:
    total = rows[0].us
    out = [f"| {title} | {unit} | share | what |", "|---|---:|---:|---|"]
    for row in rows:
        share = f"{row.us / total:.0%}" if total > 0 else ""
        out.append(
            f"| {row.part.replace('  ', '&nbsp;&nbsp;')} | {row.us:.1f} | {share} | {row.note} |"
        )
    return out


# --- cProfile ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _qualnames() -> dict[tuple[str, int], str]:
    """``(file, line) -> Class.method`` for every method defined in the package."""
    names = {}
    for module in Path(PACKAGE_DIR).glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        names[(str(module), item.lineno)] = f"{node.name}.{item.name}"
    return names


def qualname(filename: str, line: int, name: str) -> str:
    """``Class.method`` for a function of the package (cProfile only knows the bare name)."""
    return _qualnames().get((str(Path(filename).resolve()), line), name)


def in_package(filename: str) -> bool:
    """A module of bedrock_trace itself (``testing.py``, the trace destination, excluded)."""
    return filename.startswith(PACKAGE_DIR) and not filename.endswith("testing.py")


def short(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if in_package(filename):
        return f"{Path(filename).name}:{qualname(filename, line, name)}"
    if filename == "~":
        return name
    parts = Path(filename).parts
    return f"{'/'.join(parts[-2:])}:{name}"


def profile(call: W.Call, count: int, clear: Callable[[], None]) -> pstats.Stats:
    profiler = cProfile.Profile()
    for index in range(count):
        profiler.enable()
        call()
        profiler.disable()
        if index % 50 == 49:
            clear()
    clear()
    return pstats.Stats(profiler)


def profile_tables(stats: pstats.Stats, units: int, unit: str, top: int = 8) -> list[str]:
    """bedrock_trace's functions by self time; outside functions it calls, by inclusive time."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    own = sorted(
        ((func, row[2]) for func, row in raw.items() if in_package(func[0])),
        key=lambda item: -item[1],
    )
    edges: dict[Any, float] = {}
    for callee, (_cc, _nc, _tt, _ct, callers) in raw.items():
        if in_package(callee[0]):
            continue
        for caller, edge in callers.items():
            if in_package(caller[0]):
                edges[(caller, callee)] = edges.get((caller, callee), 0.0) + edge[3]
    outside = sorted(edges.items(), key=lambda item: -item[1])
    total_own = sum(t for _, t in own)
    lines = [
        f"| bedrock_trace function (self time) | profiled µs/{unit} |",
        "|---|---:|",
        *[f"| `{short(func)}` | {t / units * 1e6:.2f} |" for func, t in own[:top]],
        f"| all bedrock_trace functions, self time | {total_own / units * 1e6:.2f} |",
        "",
        f"| called from bedrock_trace → outside function (inclusive) | profiled µs/{unit} |",
        "|---|---:|",
        *[
            f"| `{short(caller)}` → `{short(callee)}` | {t / units * 1e6:.2f} |"
            for (caller, callee), t in outside[:top]
        ],
    ]
    return lines


# --- prototypes of the suggested changes -----------------------------------------------------


def best_us(fn: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def fast_dumps(value: Any, include_binary: bool) -> str:
    """Suggested ``_accumulators._dumps``: the C encoder first, the walk only when it fails."""
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError):
        return json.dumps(_payload.json_safe(value, include_binary), separators=(",", ":"))


def list_anthropic_builder() -> type[Any]:
    """Suggested ``_AnthropicBuilder``: text deltas appended to lists, joined once in build."""
    base: type[Any] = _accumulators._AnthropicBuilder

    class ListAnthropicBuilder(base):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.parts: dict[tuple[int, str], list[str]] = {}

        def add(self, chunk: dict[str, Any]) -> bool:
            delta = chunk.get("delta")
            if chunk.get("type") == "content_block_delta" and isinstance(delta, dict):
                field_name = self._TEXT_DELTAS.get(str(delta.get("type")))
                if field_name is not None:
                    index = _accumulators._index(chunk.get("index"))
                    self.blocks.setdefault(index, {"type": "text", "text": ""})
                    text = _accumulators._text(delta.get(field_name))
                    self.parts.setdefault((index, field_name), []).append(text)
                    return True
            return bool(super().add(chunk))

        def build(self) -> dict[str, Any]:
            for (index, field_name), parts in self.parts.items():
                block = self.blocks[index]
                block[field_name] = _accumulators._text(block.get(field_name)) + "".join(parts)
            self.parts = {}
            return dict(super().build())

    return ListAnthropicBuilder


def prescanned_decode(raw: bytes) -> Any:
    """Suggested ``decode_json_body`` fast path: no walk when no JSON string can be long enough.

    The walk of a decoded body (``base64_strings=True``) only replaces strings of 256
    characters or more; base64 and data URIs contain no ``"``, so if no run between two
    quotes of the raw body is that long, the walk has nothing to do.
    """
    if max(map(len, raw.split(b'"'))) < 256:
        return json.loads(raw)
    return _payload.decode_json_body(raw, include_binary=False, max_raw_chars=20_000)[0]


_BINARY_BLOCKS = frozenset({"image", "document", "video", "reasoningContent", "toolResult"})
_PLAIN_KEYS = frozenset({"modelId", "messages", "system", "inferenceConfig"})


def converse_shallow_pass(params: dict[str, Any]) -> tuple[bool, int]:
    """Suggested Converse fast path: one pass over the content blocks, not over every node.

    Returns whether a full ``json_safe`` walk is needed (a block kind that can carry bytes,
    or a parameter this check does not know) and a size estimate for the payload cap (the
    text of the blocks, which is nearly all of a prompt).
    """
    size = 0
    needs_walk = not _PLAIN_KEYS.issuperset(params)
    for message in [*params.get("messages", ()), {"content": params.get("system", ())}]:
        for block in message.get("content") or ():
            if not _BINARY_BLOCKS.isdisjoint(block):
                needs_walk = True
            text = block.get("text")
            size += len(text) + 16 if isinstance(text, str) else 64
    return needs_walk, size


def _feed(builder_class: type[Any], chunk: dict[str, Any], size: int) -> None:
    """A whole stream of ``size`` identical chunks through a builder, then its build."""
    builder = builder_class()
    for _ in range(size):
        builder.add(dict(chunk))
    builder.build()


def _prototype_rows(bench: W.Bench) -> list[tuple[str, Callable[[], Any], Callable[[], Any], str]]:
    """(what, current code, suggested code, unit) for every prototype that still applies."""
    rows: list[tuple[str, Callable[[], Any], Callable[[], Any], str]] = []
    walk = _payload.json_safe
    rough = getattr(sys.modules.get("bedrock_trace._content"), "_rough_chars", None)
    for label, name in (("small", "converse_small"), ("~100 KB", "converse_large")):
        params = bench.workload(name).kwargs

        def now(p: dict[str, Any] = params) -> Any:
            safe = walk(p)
            return rough(safe, 1_000_000) if rough else safe

        def new(p: dict[str, Any] = params) -> Any:
            needs_walk, size = converse_shallow_pass(p)
            return (walk(p) if needs_walk else p), size

        what = "`json_safe` walk" + (" + `_content._rough_chars` walk" if rough else "")
        rows.append(
            (
                f"converse inputs, {label} prompt: {what} vs one shallow pass over the content "
                "blocks",
                now,
                new,
                "call",
            )
        )
    body = json.dumps(W.ANTHROPIC_RESPONSE).encode()
    rows.append(
        (
            "invoke_model response body: `decode_json_body` (`json.loads` + `json_safe` walk) vs "
            "`json.loads` when no quoted run of the raw body reaches 256 bytes",
            lambda: _payload.decode_json_body(body, include_binary=False, max_raw_chars=20_000),
            lambda: prescanned_decode(body),
            "body",
        )
    )
    delta = {"delta": {"text": "tok "}, "contentBlockIndex": 0}
    rows.append(
        (
            "converse_stream event JSON: `_accumulators._dumps` (walk + encode) vs the C encoder "
            "first, the walk only if it raises",
            lambda: _accumulators._dumps(delta, False),
            lambda: fast_dumps(delta, False),
            "event",
        )
    )
    event: dict[str, Any] = {"contentBlockDelta": delta}
    rows.append(
        (
            "`isinstance(x, Mapping)` (ABC) vs `type(x) is dict` first, per check",
            lambda: isinstance(event, Mapping),
            lambda: type(event) is dict,
            "check",
        )
    )
    chunk = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "tok "},
    }
    listed = list_anthropic_builder()
    for size in (100, 5000, 20000):

        def current(size: int = size) -> None:
            _feed(_accumulators._AnthropicBuilder, chunk, size)

        def suggested(size: int = size) -> None:
            _feed(listed, chunk, size)

        rows.append(
            (
                f"Anthropic text deltas, {size:,}-event stream (per event): `str +` vs list + join",
                current,
                suggested,
                f"stream/{size}",
            )
        )
    return rows


def prototypes(bench: W.Bench) -> list[str]:
    """Micro-benchmarks: current code vs the suggested alternative, same inputs."""
    out = ["| what | now | suggested | per |", "|---|---:|---:|---|"]

    def row(what: str, now: float, new: float, per: str) -> None:
        out.append(f"| {what} | {now:.2f} | {new:.2f} | {per} |")

    try:
        entries = _prototype_rows(bench)
    except (AttributeError, ImportError, KeyError, TypeError) as error:
        entries = []
        out.append(f"| (prototypes skipped: the package changed: {error!r}) | | | |")
    for what, now_fn, new_fn, per in entries:
        divide = 1
        if per.startswith("stream/"):
            divide, per = int(per.split("/")[1]), "event"
        number = max(1, 20_000 // divide) if divide > 1 else 2000
        try:
            row(what, best_us(now_fn, number) / divide, best_us(new_fn, number) / divide, per)
        except Exception as error:  # noqa: BLE001 - a prototype of code that has changed
            out.append(f"| {what} | n/a ({type(error).__name__}) | | {per} |")
    span = mlflow.start_span_no_context("probe")
    delta = {"delta": {"text": "tok "}, "contentBlockIndex": 0}

    def record_event() -> None:
        text = json.dumps(delta, separators=(",", ":"))
        span.add_event(SpanEvent("contentBlockDelta", attributes={"json": text}))  # type: ignore[abstract]

    row(
        "a span event past OTel's 128-event limit (OTel discards it): event JSON + `SpanEvent` "
        "+ `add_event` vs counting it as dropped",
        best_us(record_event, 20000),
        0.0,
        "event",
    )
    row(
        "one more span attribute (`LiveSpan.set_attribute`: JSON + OTel checks), e.g. "
        "`bedrock_trace.http_status` = 200 on every OK span",
        best_us(lambda: span.set_attribute("bedrock_trace.http_status", 200), 20000),
        0.0,
        "attribute",
    )
    span.end()

    def failing_import() -> None:
        with contextlib.suppress(Exception):
            from mlflow.agent.hint import maybe_warn_agent  # noqa: F401

    row(
        "MLflow (every tracer): `LiveSpan.end` importing `mlflow.agent`, which mlflow-tracing "
        "does not ship (twice for LLM/TOOL/RETRIEVER spans)",
        best_us(failing_import, 2000),
        0.0,
        "span end",
    )
    floor = bench.workload("converse_small").calls[W.FLOOR]
    on = best_us(floor, 500)
    os.environ["MLFLOW_TRACE_EXTRACT_ATTACHMENTS"] = "false"
    try:
        off = best_us(floor, 500)
    finally:
        del os.environ["MLFLOW_TRACE_EXTRACT_ATTACHMENTS"]
    row(
        "MLflow (every tracer): the floor span of a small converse, attachment extraction on "
        "(default) vs `MLFLOW_TRACE_EXTRACT_ATTACHMENTS=false`",
        on,
        off,
        "span",
    )
    bench.capture.clear()
    return out


def events_kept(capture: Any) -> list[str]:
    """How many span events each tracer's span of a 5,000-event stream really keeps.

    OpenTelemetry's ``SpanLimits.max_events`` (128 unless ``OTEL_SPAN_EVENT_COUNT_LIMIT`` says
    otherwise) bounds the events of a span, keeping the newest; MLflow does not change it.
    """
    from opentelemetry.sdk.trace import SpanLimits

    bench = W.Bench(capture)  # with autolog: compare all three
    bench.check()
    rows = [
        "### Span events kept of a 5,000-event stream",
        "",
        f"OpenTelemetry's `SpanLimits().max_events` here: {SpanLimits().max_events}.",
        "",
        "| stream | tracer | span events kept | first kept | "
        "`bedrock_trace.stream_events` | `bedrock_trace.dropped_events` |",
        "|---|---|---:|---|---:|---:|",
    ]
    for name in ("converse_stream_5000", "invoke_stream_5000"):
        w = bench.workload(name)
        bench.prepare(w)
        for config in (W.BEDROCK_TRACE, W.AUTOLOG, W.FLOOR):
            capture.clear()
            w.calls[config]()
            (span,) = capture.spans
            attributes = span.attributes
            rows.append(
                f"| {w.title} | {config} | {len(span.events):,} | "
                f"{span.events[0].name if span.events else '-'} | "
                f"{attributes.get('bedrock_trace.stream_events', '-')} | "
                f"{attributes.get('bedrock_trace.dropped_events', '-')} |"
            )
    capture.clear()
    return rows


def sections(quick: bool) -> str:
    """All the tables, in markdown."""
    rounds = 30 if quick else 200
    stream_rounds = 4 if quick else 24
    W.isolate_from_machine_config()
    out: list[str] = []
    with capture_traces() as capture:
        # In-situ timers: the probes must be in place before register() binds the handlers.
        probes, skipped = install_probes()
        bench = W.Bench(capture, with_autolog=False)
        bench.check()
        out += [
            "### Where the overhead goes, in situ (µs, no profiler)",
            "",
            f"Probes add about {probes.wrapper_ns / 1000:.2f} µs per wrapped call. Shares are of "
            "the overhead in the first row."
            + (f" Not probed (no longer in the package): {', '.join(skipped)}." if skipped else ""),
            "",
        ]
        for name in ("converse_small", "converse_large", "invoke_model"):
            rows = breakdown_call(bench, probes, name, rounds)
            out += [*table(bench.workload(name).title, "µs/call", rows), ""]
        for name in ("converse_stream_5000", "invoke_stream_5000"):
            rows = breakdown_stream(bench, probes, name, stream_rounds)
            out += [*table(bench.workload(name).title, "µs/event", rows), ""]
        probes.uninstall()
        bench = W.Bench(capture, with_autolog=False)  # fresh handlers, without the probes
        bench.check()
        out += [
            "### cProfile: bedrock_trace's own functions, and what they call outside",
            "",
            "Profiled µs are inflated by cProfile (most for many small Python calls); read them "
            "as shares. The trace destination (`bedrock_trace/testing.py`) is left out.",
            "",
        ]
        for name, count, unit in (
            ("converse_small", 300 if quick else 2000, "call"),
            ("converse_large", 30 if quick else 200, "call"),
            ("invoke_model", 300 if quick else 2000, "call"),
            ("converse_stream_5000", 2 if quick else 10, "event"),
            ("invoke_stream_5000", 2 if quick else 10, "event"),
        ):
            w = bench.workload(name)
            bench.prepare(w)
            for _ in range(3):
                w.calls[W.BEDROCK_TRACE]()
            stats = profile(w.calls[W.BEDROCK_TRACE], count, capture.clear)
            units = count * (w.events or 1)
            out += [f"#### {w.title}", "", *profile_tables(stats, units, unit), ""]
        out += [
            "### Prototypes of the suggested changes (µs, best of 7)",
            "",
            *prototypes(bench),
            "",
        ]
        out += [*events_kept(capture), ""]  # last: it enables autolog for good
    return "\n".join(out) + "\n"


# --- main ----------------------------------------------------------------------------------


def write_docs(path: Path, text: str) -> None:
    """Put ``text`` between the profile markers of ``path`` (appended if they are missing)."""
    doc = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if BEGIN not in doc or END not in doc:
        doc = doc.rstrip("\n") + f"\n\n## Profile\n\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{text}{END}{tail}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--docs", action="store_true", help=f"write the tables into {DOCS}")
    args = parser.parse_args(argv)
    text = sections(args.quick)
    print(text)
    if args.docs:
        write_docs(DOCS, text)
        print(f"written to {DOCS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
