"""``bedrock-trace run -- COMMAND [ARGS...]``: run a program with every Bedrock client traced.

Like ``opentelemetry-instrument``: it adds ``bedrock_trace=bedrock_trace.plugin`` to
``BOTOCORE_EXPERIMENTAL__PLUGINS`` and replaces itself with the command (``exec``), so the
program's exit status and the signals sent to it are its own. The program needs no change;
MLflow is configured by its own variables (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``).

botocore ignores a plugin it cannot import (it logs that at DEBUG), so before starting the
command this checks that the command's Python can import the plugin, and says so if not.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence

from bedrock_trace._autolog import DISABLED, ENV_VAR, PLUGIN_MODULE, with_plugin

_PYTHON = re.compile(r"^(python|pypy)[0-9.]*(\.exe)?$")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bedrock-trace run",
        description=(
            "Run COMMAND with every Amazon Bedrock client it creates traced to MLflow "
            f"(sets {ENV_VAR}). Configure MLflow with MLFLOW_TRACKING_URI and "
            "MLFLOW_EXPERIMENT_NAME, and what is recorded with BEDROCK_TRACE_* variables."
        ),
        usage="bedrock-trace run [--quiet] [--no-check] -- COMMAND [ARGS...]",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing of our own")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip checking that the command's Python can import bedrock_trace",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the program and its arguments")
    return parser


def interpreter_of(program: str) -> str | None:
    """The Python that will run ``program``: itself, or the one its ``#!`` line names."""
    path = shutil.which(program)
    if path is None:
        return None
    if _PYTHON.match(os.path.basename(path)):
        return path
    try:
        with open(path, "rb") as file:
            first = file.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", errors="replace").split()
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
    if words and _PYTHON.match(os.path.basename(words[0])):
        return shutil.which(words[0]) or words[0]
    return None


def check_plugin(interpreter: str, env: dict[str, str]) -> str | None:
    """None if ``interpreter`` imports the plugin; else what went wrong, in one line."""
    try:
        done = subprocess.run(
            [interpreter, "-c", f"import {PLUGIN_MODULE}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"{type(error).__name__}: {error}"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {done.returncode}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command traced; returns only if it cannot be started."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        _parser().print_usage(sys.stderr)
        print("bedrock-trace run: no command given", file=sys.stderr)
        return 2
    env = dict(os.environ)
    value = with_plugin(env.get(ENV_VAR))
    if value is None:
        print(
            f"bedrock-trace run: {ENV_VAR}={DISABLED} in the environment: botocore loads no "
            "client plugin, so nothing will be traced.",
            file=sys.stderr,
        )
    else:
        env[ENV_VAR] = value
    if shutil.which(command[0]) is None:
        print(f"bedrock-trace run: {command[0]}: command not found", file=sys.stderr)
        return 127
    if not args.no_check and value is not None:
        interpreter = interpreter_of(command[0])
        problem = check_plugin(interpreter, env) if interpreter else None
        if problem is not None and not args.quiet:
            print(
                f"bedrock-trace run: {interpreter} cannot import {PLUGIN_MODULE} ({problem}); "
                "the program will run untraced. Install bedrock-trace into that environment.",
                file=sys.stderr,
            )
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as error:
        print(f"bedrock-trace run: {command[0]}: {error.strerror}", file=sys.stderr)
        return 126
    return 0  # pragma: no cover  (exec does not return)
