"""What a newcomer runs first, run as they would: in fresh processes, from other folders.

- the README Quickstart, pasted into ``quickstart.py`` (against the stand-in, as the README's
  "no AWS account" variant runs it), leaves a trace in a local store that the search example
  of docs/migrating-from-autolog.md finds, and the README's ``bedrock-trace ui`` command
  serves it;
- the demo prints a ``bedrock-trace ui`` command that works as printed from any folder.

Each ``ui`` run starts a real ``mlflow ui`` (through ``bedrock-trace ui --no-browser``), so this
module needs full ``mlflow``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bedrock_trace.standin import StandIn

from .conftest import FULL_MLFLOW

pytestmark = pytest.mark.skipif(
    not FULL_MLFLOW, reason="needs full mlflow: pip install -e '.[demo]'"
)

README = Path(__file__).resolve().parents[2] / "README.md"
MIGRATING = README.parent / "docs" / "migrating-from-autolog.md"
HANG_GUARD_S = 300  # not a timing check: keeps a broken run from hanging the suite


def _quickstart_code() -> str:
    """The README Quickstart's Python block, as written (see the module docstring)."""
    section = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def _readme_command(prefix: str) -> list[str]:
    """The README Quickstart's shell command starting with ``prefix``, split into words."""
    section = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    (line,) = [line for line in section.splitlines() if line.startswith(prefix)]
    return shlex.split(line)


def _env(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "MLFLOW_", "BEDROCK_TRACE_"))
    }
    env.update(AWS_EC2_METADATA_DISABLED="true", **extra)
    return env


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _ui(command: list[str], cwd: Path) -> Iterator[str]:
    """Run a ``bedrock-trace ui`` command (no browser, a free port); yields the URL it opens."""
    command = [*command, "--no-browser", "--port", str(_free_port())]
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        seen = []
        assert proc.stdout is not None
        for line in proc.stdout:  # ends when the command exits
            seen.append(line)
            if line.startswith("MLflow UI: "):
                yield line.split(": ", 1)[1].strip()
                return
        pytest.fail(f"{shlex.join(command)} exited {proc.wait()}:\n{''.join(seen)[-3000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _traces(url: str) -> list[list[str]]:
    """The span names of each trace of the experiment a trace-list URL shows, via the UI."""
    base, _, fragment = url.partition("/#/experiments/")
    experiment_id = fragment.split("/", 1)[0]
    with urllib.request.urlopen(url.split("#", 1)[0], timeout=30) as page:
        assert page.status == 200
    import mlflow

    traces = mlflow.MlflowClient(tracking_uri=base).search_traces(locations=[experiment_id])
    return [[span.name for span in trace.data.spans] for trace in traces]


class TestFirstHour:
    """The README and the demo, run as printed."""

    def test_readme_quickstart_leaves_a_trace_ui_serves(self, tmp_path):
        """quickstart.py exits on its own, and `bedrock-trace ui` shows its one-span trace."""
        (tmp_path / "quickstart.py").write_text(_quickstart_code())
        with StandIn() as server:
            done = _run([sys.executable, "quickstart.py"], tmp_path, _env(**server.environ()))
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip() == "You said: Hello!"
        assert (tmp_path / "mlflow.db").is_file()
        # docs/migrating-from-autolog.md's search example finds it, request id and all.
        (search,) = re.findall(r"```python\n(.*?)```", MIGRATING.read_text(), flags=re.S)[:1]
        setup = 'import mlflow\nmlflow.set_tracking_uri("sqlite:///mlflow.db")\n'
        setup += 'mlflow.set_experiment("quickstart")\n'
        (tmp_path / "search.py").write_text(setup + search)
        found = _run([sys.executable, "search.py"], tmp_path, _env())
        assert found.returncode == 0, found.stderr[-3000:]
        (line,) = found.stdout.splitlines()
        trace_id, request_id = line.split()
        assert trace_id.startswith("tr-")
        assert request_id != "None"
        command = _readme_command(".venv/bin/bedrock-trace ui")
        command = [sys.executable, "-m", "bedrock_trace.demo", *command[1:]]
        with _ui(command, tmp_path) as url:
            assert _traces(url) == [["BedrockRuntime.converse"]]

    def test_demo_ui_command_runs_as_printed_elsewhere(self, tmp_path):
        """The demo's store path is absolute; its printed command works from another folder."""
        here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
        here.mkdir()
        elsewhere.mkdir()
        done = _run([sys.executable, "-m", "bedrock_trace.demo", "demo"], here, _env())
        assert done.returncode == 0, done.stderr[-3000:]
        printed = done.stdout.split("== open them in the MLflow UI", 1)[1].splitlines()[1]
        command = shlex.split(printed)
        store = here / "bedrock-trace-demo.db"
        assert command[1:] == [
            "ui",
            "--tracking-uri",
            f"sqlite:///{store}",
            "--experiment",
            "bedrock-trace-demo",
        ]
        assert Path(command[0]).is_absolute()
        with _ui(command, elsewhere) as url:
            traces = _traces(url)
        # The demo's four traces: basic and streaming (one span each), the tool-using agent
        # (four), the Bedrock Agent with a knowledge base (its tree of eleven).
        assert sorted(len(trace) for trace in traces) == [1, 1, 4, 11], json.dumps(traces)
