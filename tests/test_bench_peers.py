"""The benchmark's OpenTelemetry peers (bench/peers.py) where they are not installed.

The benchmark must run without them and say which were not measured; the test environment
does not install them (bench/requirements-peers.txt does).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import peers as P
import run as R
import workloads as W

from bedrock_trace.testing import capture_traces

#: the peers this environment lacks (all of them in the test environments); requesting only
#: these keeps an installed peer from instrumenting botocore for the rest of the session
ABSENT = tuple(name for name in P.NAMES if P.installed_version(P.DISTRIBUTIONS[name]) is None)


@pytest.fixture(scope="module")
def bench() -> Iterator[W.Bench]:
    with capture_traces() as capture:
        bench = W.Bench(capture, stream_sizes=(100, 200), with_autolog=False, peers=ABSENT)
        yield bench


class TestWithoutPeers:
    def test_missing_peers_are_listed_as_not_installed(self, bench: W.Bench) -> None:
        """Each peer asked for and not installed is named, none is set up."""
        assert bench.clients.missing_peers == dict.fromkeys(ABSENT, "not installed")
        assert bench.clients.peers == []
        assert bench.peers == {}

    def test_every_configuration_still_checks_and_runs(self, bench: W.Bench) -> None:
        """The check passes, and no workload has a peer configuration."""
        bench.check()
        for w in bench.workloads:
            assert not set(w.configs) & set(P.NAMES), w.name
            for config in w.configs:
                with bench.batch(config):
                    w.calls[config]()
                assert bench.capture.spans == []  # emptied after the batch

    def test_no_class_is_wrapped(self, bench: W.Bench) -> None:
        """botocore's own BaseClient._make_api_call and Endpoint.prepare_request are in place."""
        assert not P.class_patched()
        assert not P.instance_patched(bench.clients.untraced)
        assert not P.instance_patched(bench.clients.traced)

    def test_clients_created_unobserved_without_opentelemetry_instrumentation(self) -> None:
        """creating_unobserved() is a plain context where no peer is installed."""
        with P.creating_unobserved():
            client = W.make_session().client("bedrock-runtime")
        assert not P.instance_patched(client)

    def test_the_report_names_the_peers_not_measured(self, bench: W.Bench) -> None:
        """The report says which peers were not measured, and the peer target is not judged."""
        report = R.Report(R.QUICK, "quick", bench, R.Samples(), {}, [], 0, 0.0)
        note = report.peers_note()
        assert ("Not measured" in note) == bool(ABSENT)
        for name in ABSENT:
            assert f"`{name}` ({P.DISTRIBUTIONS[name]}: not installed)" in note
        if set(ABSENT) == set(P.NAMES):
            (target,) = report.targets
            assert target[3] is None
            assert R.verdict(target[3]) == "not measured"
