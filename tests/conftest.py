"""Shared fixtures: offline AWS sessions, traced clients, stubs, and an in-memory trace capture."""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from hypothesis import HealthCheck, settings

import bedrock_trace
from bedrock_trace.testing import HttpStub, TraceCapture, capture_traces, strict_guard

# Time is measured by the benchmarks, never asserted in tests: Hypothesis's deadline and its
# input-generation speed check fail on a busy machine, so both are off for every test.
settings.register_profile(
    "bedrock_trace", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("bedrock_trace")

# Distinctive fake credentials: tests search every trace and log line for them.
ACCESS_KEY = "AKIAFAKEBEDROCKTRACE"
SECRET_KEY = "fake-secret-key-9f8e7d6c5b4a39281706"
SESSION_TOKEN = "fake-session-token-0a1b2c3d4e5f60718293"
REGION = "us-east-1"
MODEL_ID = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the machine's AWS configuration and credentials out of every test."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME",
        "BOTOCORE_EXPERIMENTAL__PLUGINS",
    ):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(autouse=True)
def _strict() -> Iterator[None]:
    """Errors inside bedrock_trace fail the test (tests of the guard opt out explicitly)."""
    with strict_guard():
        yield


@pytest.fixture
def capture() -> Iterator[TraceCapture]:
    """Finished MLflow traces, in memory; asserts no trace is left open at the end."""
    with capture_traces() as cap:
        yield cap
        gc.collect()
        bedrock_trace.testing.flush()
        assert cap.open_traces() == 0, "a span was left open"


def make_session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=SESSION_TOKEN,
        region_name=REGION,
    )


ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture
def session() -> Iterator[boto3.Session]:
    """A session with fake credentials, registered with bedrock_trace."""
    sess = make_session()
    bedrock_trace.register(sess)
    yield sess
    bedrock_trace.unregister(sess)


@pytest.fixture
def client(session: boto3.Session):  # type: ignore[no-untyped-def]
    """A bedrock-runtime client of the registered session, one attempt per call."""
    return session.client("bedrock-runtime", config=ONE_ATTEMPT)


@pytest.fixture
def stubber(client) -> Iterator[Stubber]:  # type: ignore[no-untyped-def]
    """A Stubber on ``client``, activated after register; every queued response must be used."""
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def http(client) -> Iterator[HttpStub]:  # type: ignore[no-untyped-def]
    """Real HTTP responses for ``client`` from a before-send handler."""
    with HttpStub(client) as stub:
        yield stub
        assert stub.pending() == 0, "queued HTTP responses were not used"


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def session_with_model_change(tmp_path, change):  # type: ignore[no-untyped-def]
    """A botocore session whose bedrock-runtime model was edited by ``change(model)``.

    Loaded through botocore's own data path, the way botocore loads any newer model.
    """
    import json

    import botocore.session

    loader = botocore.session.Session().get_component("data_loader")
    version = loader.determine_latest_version("bedrock-runtime", "service-2")
    model = loader.load_service_model("bedrock-runtime", "service-2", version)
    model["shapes"].setdefault("String", {"type": "string"})
    change(model)
    folder = tmp_path / "bedrock-runtime" / version
    folder.mkdir(parents=True)
    (folder / "service-2.json").write_text(json.dumps(model))
    session = botocore.session.Session()
    session.get_component("data_loader").search_paths.insert(0, str(tmp_path))
    session.set_credentials("AKIAFAKE", "fake-secret")
    return session
