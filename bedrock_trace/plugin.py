"""botocore client plugin: ``BOTOCORE_EXPERIMENTAL__PLUGINS="bedrock_trace=bedrock_trace.plugin"``.

botocore imports this module and calls :func:`initialize_client_plugin` for every client it
creates, of any service, while the variable names it (``bedrock_trace.autolog()`` and
``bedrock-trace run`` set it). Bedrock data-plane clients (``bedrock-runtime``,
``bedrock-agent-runtime``) get our handlers, exactly as
``bedrock_trace.register(client)`` would give them; every other client is left alone, and this
module imports MLflow only once a Bedrock client appears.

botocore swallows a plugin's errors and logs them at DEBUG only; so this module logs its own
problems at WARNING, and, once, at INFO that tracing is on.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from bedrock_trace._autolog import state
from bedrock_trace._guard import Guard

__all__ = ["initialize_client_plugin"]

logger = logging.getLogger("bedrock_trace")

#: The services whose clients are traced (not ``bedrock``, the control plane). The same as
#: ``_handlers.SERVICES``, spelled out here so that other clients never import MLflow.
SERVICES = frozenset({"bedrock-runtime", "bedrock-agent-runtime"})

_announced = threading.Event()
_config_error_reported = threading.Event()
# botocore would log an error out of this plugin at DEBUG only; the guard logs it at WARNING.
_guard = Guard("client plugin")


def initialize_client_plugin(client: Any) -> None:
    """Register tracing on ``client`` if it is a Bedrock data-plane client; never raises."""
    service = getattr(
        getattr(getattr(client, "meta", None), "service_model", None), "service_name", None
    )
    if service not in SERVICES or state.enabled is False:
        return
    with _guard:
        try:
            _register(client, service)
        except ValueError as error:  # a BEDROCK_TRACE_* variable it cannot read
            if not _config_error_reported.is_set():
                _config_error_reported.set()
                logger.warning("bedrock_trace: Bedrock clients are not traced: %s", error)


def _register(client: Any, service: str) -> None:
    from bedrock_trace._config import TraceConfig
    from bedrock_trace._registry import register_autologged

    with state.lock:
        if state.enabled is False:
            return
        if state.config is None:  # the environment variable alone: nobody called autolog()
            state.config = TraceConfig.from_env()
        config = state.config
    if register_autologged(client, config) and not _announced.is_set():
        _announced.set()
        logger.info(
            "bedrock_trace: tracing Bedrock calls of clients created from now on (first: %s "
            "in %s).",
            service,
            client.meta.region_name,
        )
