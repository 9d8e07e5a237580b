"""The pytest plugin: docs/testing.md's example passes as written; loading it costs nothing."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

DOC = pathlib.Path(__file__).parent.parent / "docs" / "testing.md"
HANG_GUARD_S = 300  # not a timing check: only keeps a broken run from hanging the suite


def _doc_example() -> str:
    """The complete test file under "## pytest fixtures" in docs/testing.md, as written."""
    section = DOC.read_text().split("## pytest fixtures", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def _clean_env() -> dict[str, str]:
    """The environment minus anything that would point boto3 or MLflow somewhere real."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "MLFLOW_", "PYTEST_", "BEDROCK_TRACE_"))
    }
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


def _pytest(folder: pathlib.Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
    )


class TestPytestPlugin:
    """What docs/testing.md promises about the fixtures."""

    @pytest.mark.parametrize("loading", ["entry point", "-p when autoload is off"])
    def test_documented_example_passes(self, tmp_path, loading):
        """The doc's test file, copied as is into an empty folder, passes with the fixtures."""
        (tmp_path / "test_ask.py").write_text(_doc_example())
        env, args = _clean_env(), ["test_ask.py"]
        if loading != "entry point":
            env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
            args = ["-p", "bedrock_trace.pytest_plugin", *args]
        done = _pytest(tmp_path, *args, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "2 passed" in done.stdout

    def test_unused_plugin_imports_nothing_heavy(self, tmp_path):
        """Loading the entry point imports neither boto3, botocore nor MLflow."""
        code = (
            "import sys\n"
            "from importlib.metadata import entry_points\n"
            "(ep,) = entry_points(group='pytest11', name='bedrock_trace')\n"
            "ep.load()\n"
            "heavy = sorted(m for m in ('mlflow', 'boto3', 'botocore') if m in sys.modules)\n"
            "print(ep.value, heavy)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "bedrock_trace.pytest_plugin []"

    def test_fixtures_do_not_leak_between_tests(self, tmp_path):
        """A stubbed response left unused fails its test; the next test starts clean."""
        (tmp_path / "test_leak.py").write_text(
            "from bedrock_trace.testing import converse_response\n"
            "M = [{'role': 'user', 'content': [{'text': 'hi'}]}]\n"
            "def test_one_left(bedrock_client, bedrock_stubber, bedrock_traces):\n"
            "    bedrock_stubber.add_response('converse', converse_response('x'))\n"
            "    bedrock_stubber.add_response('converse', converse_response('y'))\n"
            "    bedrock_client.converse(modelId='amazon.nova-lite-v1:0', messages=M)\n"
            "    assert len(bedrock_traces.spans) == 1\n"
            "def test_clean(bedrock_traces, bedrock_client, bedrock_stubber):\n"
            "    assert bedrock_traces.spans == []\n"
        )
        done = _pytest(tmp_path, "test_leak.py", env=_clean_env())
        assert "2 passed, 1 error" in done.stdout, done.stdout
        assert "ERROR test_leak.py::test_one_left" in done.stdout
        assert "1 responses remaining in queue" in done.stdout
