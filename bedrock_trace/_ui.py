"""``bedrock-trace ui``: start the MLflow UI on a local trace store and open its traces.

``mlflow ui`` needs the store's URI exactly right (a relative ``sqlite:///`` path is relative
to the folder the UI starts in) and the ``mlflow`` command on ``PATH``; this command runs the
interpreter's own MLflow on an absolute store path, waits until the UI answers, and opens the
experiment's trace list in the browser. An ``http(s)://`` tracking URI is a server already
running: it is only opened.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

DEFAULT_PORT = 5000
START_TIMEOUT_S = 120.0  # a first start migrates the SQLite schema: 10-30 s on a small machine


def absolute_store_uri(uri: str) -> str:
    """``uri`` with a relative ``sqlite:///`` path made absolute (from the current folder)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = uri[len(prefix) :]
        if path and not path.startswith("/") and not path.startswith(":memory:"):
            return prefix + os.path.abspath(path)
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix) :].split("?", 1)[0]
    return Path(path) if path and not path.startswith(":memory:") else None


def command_prefix() -> str:
    """How to run ``bedrock-trace`` from anywhere: the script next to this interpreter."""
    script = Path(sys.executable).parent / "bedrock-trace"
    if script.is_file():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m bedrock_trace.demo"


def traces_url(base: str, experiment_id: str | None) -> str:
    """The UI page listing an experiment's traces (the experiments list without one)."""
    base = base.rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/traces" if experiment_id else f"{base}/"


def _parser() -> argparse.ArgumentParser:
    from bedrock_trace import demo

    parser = argparse.ArgumentParser(
        prog="bedrock-trace ui",
        description=(
            "Start the MLflow UI (this interpreter's mlflow) on a local trace store and open "
            "the experiment's traces in the browser. Needs full mlflow (the demo extra)."
        ),
    )
    parser.add_argument(
        "--tracking-uri",
        help=f"the store (default: {demo.DEFAULT_STORE}, in the current folder); an "
        "http(s):// server that is already running is only opened",
    )
    parser.add_argument("--experiment", default=demo.EXPERIMENT, help="experiment to open")
    parser.add_argument("--host", default="127.0.0.1", help="address the UI listens on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port the UI listens on")
    parser.add_argument(
        "--no-browser", action="store_true", help="print the address, do not open a browser"
    )
    return parser


def _experiment_id(uri: str, name: str) -> str | None:
    import mlflow

    with contextlib.suppress(Exception):  # a store we cannot read: open the experiments list
        experiment = mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name(name)
        return str(experiment.experiment_id) if experiment is not None else None
    return None


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _has_display() -> bool:
    """Whether a graphical browser can open here (else ``webbrowser`` may start a text-mode
    browser that takes over the terminal)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _open(url: str, no_browser: bool, out: TextIO) -> None:
    print(f"MLflow UI: {url}", file=out, flush=True)
    if not no_browser and _has_display():
        with contextlib.suppress(Exception):  # no browser here: the address is printed
            webbrowser.open(url)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run ``bedrock-trace ui``; returns the exit code."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    from bedrock_trace import demo

    uri = absolute_store_uri(args.tracking_uri or demo.DEFAULT_STORE)
    if uri.startswith(("http://", "https://")):
        if not _answers(uri.rstrip("/")):
            print(f"The MLflow server at {uri} does not answer.", file=sys.stderr)
            return 1
        _open(traces_url(uri, _experiment_id(uri, args.experiment)), args.no_browser, out)
        return 0
    database = sqlite_path(uri)
    if database is not None and not database.is_file():
        print(
            f"No trace store at {database}: run `bedrock-trace demo` here first, or pass "
            "--tracking-uri sqlite:///<path to your .db>.",
            file=sys.stderr,
        )
        return 2
    if importlib.util.find_spec("sqlalchemy") is None or importlib.util.find_spec("flask") is None:
        print(
            "The MLflow UI needs full MLflow: pip install mlflow (in a bedrock-trace checkout: "
            "pip install -e '.[demo]').",
            file=sys.stderr,
        )
        return 2
    if _port_in_use(args.host, args.port):
        print(
            f"Port {args.port} on {args.host} is taken (another MLflow UI?): pass --port.",
            file=sys.stderr,
        )
        return 2
    base = f"http://{args.host}:{args.port}"
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--host", args.host, "--port", str(args.port)]
    print(f"starting: {shlex.join(command)}", file=out, flush=True)
    env = dict(os.environ)
    # A viewer needs none of MLflow's background job workers (a dozen processes).
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(base):
            if proc.poll() is not None:
                print(f"mlflow ui exited with status {proc.returncode}.", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                print(f"mlflow ui did not answer within {START_TIMEOUT_S:.0f} s.", file=sys.stderr)
                return 1
            time.sleep(0.25)
        _open(traces_url(base, _experiment_id(uri, args.experiment)), args.no_browser, out)
        print("Ctrl-C stops it.", file=out, flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
