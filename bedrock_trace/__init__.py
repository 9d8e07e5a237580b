"""Trace Amazon Bedrock Runtime calls made with boto3/botocore as MLflow spans.

Tracing is wired through botocore's event system only::

    import boto3, bedrock_trace

    session = boto3.Session()
    bedrock_trace.register(session)
    client = session.client("bedrock-runtime")
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from bedrock_trace._config import TraceConfig

if TYPE_CHECKING:
    from bedrock_trace._registry import register, unregister

try:
    __version__ = version("bedrock-trace")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["TraceConfig", "__version__", "register", "unregister"]

# Names whose modules import boto3 and MLflow, loaded on first use: importing a submodule
# (the pytest plugin, the stand-in) must not cost that.
_LAZY = {"register": "bedrock_trace._registry", "unregister": "bedrock_trace._registry"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bedrock_trace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
