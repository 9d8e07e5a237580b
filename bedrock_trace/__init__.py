"""Trace Amazon Bedrock Runtime calls made with boto3/botocore as MLflow spans.

Tracing is wired through botocore's event system only::

    import bedrock_trace

    bedrock_trace.autolog()              # every Bedrock client created from now on
    # or, per session or client:
    bedrock_trace.register(session)

The public names are imported on first use, so importing a submodule that needs neither
MLflow nor boto3 (the stand-in, the client plugin of a program that never calls Bedrock)
stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bedrock_trace._autolog import autolog
    from bedrock_trace._config import TraceConfig
    from bedrock_trace._registry import register, unregister

try:
    __version__ = version("bedrock-trace")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["TraceConfig", "__version__", "autolog", "register", "unregister"]

_LAZY = {
    "TraceConfig": "bedrock_trace._config",
    "autolog": "bedrock_trace._autolog",
    "register": "bedrock_trace._registry",
    "unregister": "bedrock_trace._registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bedrock_trace' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
