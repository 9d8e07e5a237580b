"""``bedrock-trace run -- COMMAND``: the variable set, the command exec'd, problems said aloud."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from bedrock_trace import _run

from .test_autolog import APP

ENV = "BOTOCORE_EXPERIMENTAL__PLUGINS"
ENTRY = "bedrock_trace=bedrock_trace.plugin"
RUN = [sys.executable, "-m", "bedrock_trace.demo", "run"]


def bedrock_trace_run(*command: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    base = {k: v for k, v in os.environ.items() if k != ENV}
    return subprocess.run(
        [*RUN, *command],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


class TestRunCommand:
    """What the launched program gets."""

    def test_sets_the_variable_for_the_program(self):
        """The program sees our entry in BOTOCORE_EXPERIMENTAL__PLUGINS."""
        done = bedrock_trace_run(
            "--", sys.executable, "-c", f"import os; print(os.environ['{ENV}'])"
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == ENTRY
        assert done.stderr == ""

    def test_keeps_other_plugins(self):
        """Entries already in the variable are kept, ours added once."""
        done = bedrock_trace_run(
            "--",
            sys.executable,
            "-c",
            f"import os; print(os.environ['{ENV}'])",
            env={ENV: f"other=pkg.other,{ENTRY}"},
        )
        assert done.stdout.strip() == f"other=pkg.other,{ENTRY}"

    def test_exit_status_is_the_programs(self):
        """The program's exit status comes back unchanged."""
        done = bedrock_trace_run("--", sys.executable, "-c", "import sys; sys.exit(7)")
        assert done.returncode == 7

    def test_arguments_pass_unchanged(self):
        """Arguments that look like our options belong to the program."""
        done = bedrock_trace_run(
            "--", sys.executable, "-c", "import sys; print(sys.argv[1:])", "--quiet", "-q", "--"
        )
        assert done.stdout.strip() == "['--quiet', '-q', '--']"

    def test_signals_reach_the_program(self):
        """The command replaces us (exec): a signal sent to our pid is the program's."""
        process = subprocess.Popen(
            [
                *RUN,
                "--",
                sys.executable,
                "-c",
                "import time; print('ready', flush=True); time.sleep(60)",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == -signal.SIGTERM
        finally:
            process.kill()
            process.wait()

    def test_command_not_found(self):
        """A missing program: status 127 and a line saying so, as a shell would."""
        done = bedrock_trace_run("--", "no-such-program-bedrock-trace")
        assert done.returncode == 127
        assert "command not found" in done.stderr

    def test_no_command(self):
        """Nothing to run: usage and status 2."""
        done = bedrock_trace_run()
        assert done.returncode == 2
        assert "no command given" in done.stderr

    def test_disabled_variable_is_respected(self):
        """DISABLED is left as it is, the program still runs, and we say nothing is traced."""
        done = bedrock_trace_run(
            "--",
            sys.executable,
            "-c",
            f"import os; print(os.environ['{ENV}'])",
            env={ENV: "DISABLED"},
        )
        assert done.returncode == 0
        assert done.stdout.strip() == "DISABLED"
        assert "nothing will be traced" in done.stderr


class TestRunCheck:
    """botocore hides a plugin it cannot import; run says so before starting the program."""

    @pytest.fixture
    def bare_python(self, tmp_path: Path) -> Path:
        """A Python environment without bedrock_trace installed."""
        venv.EnvBuilder(with_pip=False).create(tmp_path / "bare")
        return tmp_path / "bare" / "bin" / "python"

    def test_warns_when_the_program_cannot_import_the_plugin(self, bare_python, tmp_path):
        """A Python without bedrock_trace: a warning naming it; the program still runs."""
        done = bedrock_trace_run("--", str(bare_python), "-c", "print('ran')", cwd=tmp_path)
        assert done.returncode == 0
        assert done.stdout.strip() == "ran"
        assert "cannot import bedrock_trace.plugin" in done.stderr
        assert str(bare_python) in done.stderr

    def test_a_script_is_checked_through_its_shebang(self, bare_python, tmp_path):
        """A console script is checked with the Python its #! line names."""
        script = tmp_path / "app"
        script.write_text(f"#!{bare_python}\nprint('ran')\n")
        script.chmod(0o755)
        done = bedrock_trace_run("--", str(script), cwd=tmp_path)
        assert done.stdout.strip() == "ran"
        assert "cannot import bedrock_trace.plugin" in done.stderr

    def test_no_check_and_quiet_skip_it(self, bare_python, tmp_path):
        """--no-check does not look; --quiet does not say."""
        for flag in ("--no-check", "--quiet"):
            done = bedrock_trace_run(flag, "--", str(bare_python), "-c", "print(1)", cwd=tmp_path)
            assert done.stderr == "", flag

    @pytest.mark.parametrize(
        ("first_line", "expected"),
        [
            ("#!/usr/bin/env python3", "python3"),
            ("#!/usr/bin/env -S python3 -u", "python3"),
            ("#!/bin/sh", None),
        ],
        ids=["env-python", "env-with-flags", "shell"],
    )
    def test_interpreter_of_a_script(self, tmp_path, monkeypatch, first_line, expected):
        """The #! line decides which Python is checked; a shell script is not checked."""
        script = tmp_path / "tool"
        script.write_text(first_line + "\n")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
        found = _run.interpreter_of("tool")
        if expected is None:
            assert found is None
        else:
            assert found is not None
            assert Path(found).name.startswith("python3")


def test_run_traces_a_program_that_never_calls_autolog(tmp_path):
    """The whole path: run sets the variable, botocore loads the plugin, the call is traced."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    done = bedrock_trace_run(
        "--",
        sys.executable,
        str(app),
        env={"AWS_ACCESS_KEY_ID": "AKIAFAKE", "AWS_SECRET_ACCESS_KEY": "fake"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['BedrockRuntime.converse']"
