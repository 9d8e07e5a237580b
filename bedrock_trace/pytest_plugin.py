"""pytest fixtures for testing code that calls Bedrock with ``bedrock_trace`` registered.

pytest loads this module by itself when ``bedrock-trace`` is installed (entry point
``pytest11``, name ``bedrock_trace``), the way pytest-mock or pytest-httpserver are loaded. It
costs nothing until a test asks for one of its fixtures: it defines no hooks and no autouse
fixtures, and imports nothing but pytest until a fixture runs (``import bedrock_trace`` itself
loads boto3 and MLflow only on first use). ``-p no:bedrock_trace`` switches it off; with
``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set, ``-p bedrock_trace.pytest_plugin`` switches it on.

Fixtures (all function-scoped, all offline; see docs/testing.md):

- ``bedrock_traces``: a :class:`~bedrock_trace.testing.TraceCapture` of the MLflow traces
  finished during the test, in memory (no tracking server, nothing written to disk).
- ``bedrock_session``: a ``boto3.Session`` with dummy credentials in ``us-east-1``,
  registered with ``bedrock_trace`` (unregistered after the test).
- ``bedrock_client``: a ``bedrock-runtime`` client of that session, one attempt per call.
- ``bedrock_stubber``: a ``botocore.stub.Stubber`` activated on ``bedrock_client``; every
  queued response must have been used by the end of the test.
- ``bedrock_standin``: a running :class:`~bedrock_trace.standin.StandIn` on 127.0.0.1 (script
  it with ``bedrock_standin.add(...)``), and ``bedrock_standin_client``, a client of
  ``bedrock_session`` pointed at it (streams included: the stand-in speaks the real protocol).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import boto3
    from botocore.stub import Stubber

    from bedrock_trace.standin import StandIn
    from bedrock_trace.testing import TraceCapture

# Dummy credentials: botocore signs with them; neither a Stubber nor the stand-in checks them.
_ACCESS_KEY = "AKIAFAKEBEDROCKTEST0"
_SECRET_KEY = "fake-secret-key-for-tests"
_REGION = "us-east-1"


@pytest.fixture
def bedrock_traces() -> Iterator[TraceCapture]:
    """The MLflow traces finished during the test, kept in memory."""
    from bedrock_trace.testing import capture_traces

    with capture_traces() as capture:
        yield capture


@pytest.fixture
def bedrock_session() -> Iterator[boto3.Session]:
    """A boto3 session with dummy credentials, registered with ``bedrock_trace``."""
    import boto3

    import bedrock_trace

    session = boto3.Session(
        aws_access_key_id=_ACCESS_KEY, aws_secret_access_key=_SECRET_KEY, region_name=_REGION
    )
    bedrock_trace.register(session)
    yield session
    bedrock_trace.unregister(session)


def _one_attempt() -> Any:
    from botocore.config import Config

    return Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture
def bedrock_client(bedrock_session: boto3.Session) -> Any:
    """A ``bedrock-runtime`` client of ``bedrock_session`` (traced), one attempt per call."""
    return bedrock_session.client("bedrock-runtime", config=_one_attempt())


@pytest.fixture
def bedrock_stubber(bedrock_client: Any) -> Iterator[Stubber]:
    """A ``Stubber`` on ``bedrock_client``; queued responses must all be used by the end."""
    from botocore.stub import Stubber

    with Stubber(bedrock_client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def bedrock_standin() -> Iterator[StandIn]:
    """The local Bedrock Runtime stand-in, running on a free loopback port."""
    from bedrock_trace.standin import StandIn

    with StandIn() as server:
        yield server


@pytest.fixture
def bedrock_standin_client(bedrock_session: boto3.Session, bedrock_standin: StandIn) -> Any:
    """A traced ``bedrock-runtime`` client of ``bedrock_session`` talking to the stand-in."""
    return bedrock_session.client(
        "bedrock-runtime", endpoint_url=bedrock_standin.endpoint_url, config=_one_attempt()
    )
