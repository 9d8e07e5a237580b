"""``autolog()``: trace every Bedrock client created in this process, through botocore's plugins.

botocore calls ``initialize_client_plugin(client)`` of every module named in
``BOTOCORE_EXPERIMENTAL__PLUGINS`` (``name=module,...``), read from the environment each time a
client is created (botocore >= 1.39.9; aiobotocore inherits it). ``autolog()`` adds
``bedrock_trace=bedrock_trace.plugin`` to that variable, keeping its other entries, and
``bedrock_trace.plugin`` registers our handlers on each Bedrock client, as ``register(client)``
would. Nothing is patched. The variable is inherited by child processes, which is how
``bedrock-trace run`` works and what ``autolog(disable=True)`` undoes.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading

import botocore

from bedrock_trace._config import TraceConfig

logger = logging.getLogger("bedrock_trace")

ENV_VAR = "BOTOCORE_EXPERIMENTAL__PLUGINS"
PLUGIN_NAME = "bedrock_trace"
PLUGIN_MODULE = "bedrock_trace.plugin"
ENTRY = f"{PLUGIN_NAME}={PLUGIN_MODULE}"
DISABLED = "DISABLED"  # botocore's own value: load no client plugin at all
MIN_BOTOCORE = "1.39.9"


class _State:
    """The process-wide autolog switch.

    ``enabled`` is None until ``autolog()`` is called: a program started with the environment
    variable alone (``bedrock-trace run``) is then traced with ``TraceConfig.from_env()``.
    """

    __slots__ = ("config", "enabled", "lock")

    def __init__(self) -> None:
        self.enabled: bool | None = None
        self.config: TraceConfig | None = None
        self.lock = threading.Lock()


state = _State()


def parse_entries(value: str | None) -> list[tuple[str, str]]:
    """The ``name=module`` entries of the variable, as botocore reads them (blanks dropped)."""
    entries = []
    for part in (value or "").split(","):
        name, sep, module = part.partition("=")
        if sep and name.strip():
            entries.append((name.strip(), module.strip()))
    return entries


def with_plugin(value: str | None) -> str | None:
    """The variable's value with our entry added (others kept); None if it says DISABLED."""
    if value is not None and value.strip() == DISABLED:
        return None
    entries = [(n, m) for n, m in parse_entries(value) if n != PLUGIN_NAME]
    entries.append((PLUGIN_NAME, PLUGIN_MODULE))
    return ",".join(f"{name}={module}" for name, module in entries)


def without_plugin(value: str | None) -> str | None:
    """The variable's value with our entry removed; None if nothing else is left."""
    if value is None or value.strip() == DISABLED:
        return value
    entries = [(n, m) for n, m in parse_entries(value) if n != PLUGIN_NAME]
    return ",".join(f"{name}={module}" for name, module in entries) or None


def check_hook() -> None:
    """Raise a clear error if this botocore has no client-plugin hook.

    Raises:
        RuntimeError: botocore is older than 1.39.9.
    """
    try:
        plugin = importlib.import_module("botocore.plugin")
    except ImportError:
        plugin = None
    if plugin is None or not callable(getattr(plugin, "load_client_plugins", None)):
        raise RuntimeError(
            f"bedrock_trace.autolog() needs botocore >= {MIN_BOTOCORE} (its client-plugin "
            f"hook); botocore {botocore.__version__} is installed. Upgrade botocore, or trace "
            "sessions and clients explicitly with bedrock_trace.register(...)."
        )


def autolog(*, config: TraceConfig | None = None, disable: bool = False) -> None:
    """Trace every Bedrock client created in this process from now on (or stop).

    Frameworks such as Strands, pydantic-ai, LlamaIndex and LangChain build their own
    ``boto3.Session()``, out of reach of :func:`register`; ``autolog()`` covers their clients
    too, through botocore's client-plugin hook (no patching). Clients created before the call
    are not covered: call it first, or ``register(client)`` them.

    Args:
        config: what to record for the clients autolog registers. None: the defaults, with
            ``BEDROCK_TRACE_*`` environment variables applied. Calling again with a config
            replaces it for every client autolog registered. A client or session registered
            explicitly with :func:`register` keeps its own configuration.
        disable: stop: no new spans from any client autolog registered, and no more clients
            registered. Streams already handed out still end their spans.

    The switch lives in ``BOTOCORE_EXPERIMENTAL__PLUGINS``, which child processes inherit:
    they trace too if they have ``bedrock_trace`` installed. To keep it from a child, remove
    the ``bedrock_trace=bedrock_trace.plugin`` entry from the child's environment. If the
    variable is ``DISABLED``, botocore loads no plugin and autolog logs a warning and does
    nothing.

    Raises:
        TypeError: ``config`` is not a :class:`TraceConfig`.
        RuntimeError: the installed botocore has no client-plugin hook.
        ValueError: a ``BEDROCK_TRACE_*`` environment variable cannot be understood.
    """
    from bedrock_trace import _registry

    if config is not None and not isinstance(config, TraceConfig):
        raise TypeError(f"bedrock_trace: config must be a TraceConfig; got {type(config)!r}")
    with state.lock:
        if disable:
            state.enabled = False
            _set_env(without_plugin(os.environ.get(ENV_VAR)))
            _registry.switch_autologged(active=False)
            return
        check_hook()
        resolved = config or state.config or TraceConfig.from_env()
        value = with_plugin(os.environ.get(ENV_VAR))
        if value is None:
            logger.warning(
                "bedrock_trace.autolog(): %s=DISABLED, so botocore loads no client plugin and "
                "no client is traced. Unset it, or use bedrock_trace.register(...).",
                ENV_VAR,
            )
            return
        state.enabled, state.config = True, resolved
        _set_env(value)
        _registry.switch_autologged(active=True, config=config)


def _set_env(value: str | None) -> None:
    if value is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = value
