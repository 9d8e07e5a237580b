"""The command line: ``python -m bedrock_trace.standin`` and ``bedrock-trace standin``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from bedrock_trace.standin._scenario import Scenario
from bedrock_trace.standin._server import StandIn, _log


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bedrock-trace standin",
        description="Serve a local stand-in for Amazon Bedrock Runtime and the Agents for "
        "Amazon Bedrock Runtime (nothing contacts AWS).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to listen on (default 8765; 0: any free port)"
    )
    parser.add_argument("--scenario", type=Path, help="JSON scenario file (rules)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until interrupted (Ctrl-C or SIGTERM); the exit status."""
    args = _parser().parse_args(argv)
    try:
        scenario = Scenario.load(args.scenario) if args.scenario else Scenario()
    except (OSError, ValueError) as exc:
        print(f"bedrock-trace standin: cannot load {args.scenario}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    _log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    server = StandIn(scenario, host=args.host, port=args.port)
    try:
        server.start()
    except OSError as exc:
        print(
            f"bedrock-trace standin: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    print(f"Bedrock Runtime stand-in listening on {server.endpoint_url}", flush=True)
    print(f"  export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={server.endpoint_url}", flush=True)
    print(f"  export AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME={server.endpoint_url}", flush=True)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
