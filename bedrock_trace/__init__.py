"""Trace Amazon Bedrock Runtime calls made with boto3/botocore as MLflow spans.

Tracing is wired through botocore's event system only::

    import boto3, bedrock_trace

    session = boto3.Session()
    bedrock_trace.register(session)
    client = session.client("bedrock-runtime")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from bedrock_trace._config import TraceConfig
from bedrock_trace._registry import register, unregister

try:
    __version__ = version("bedrock-trace")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["TraceConfig", "__version__", "register", "unregister"]
