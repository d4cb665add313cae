"""The local Prefect server taskmark starts when ``PREFECT_API_URL`` is not set.

``connect`` points Prefect at ``PREFECT_API_URL`` or at this server, started on first use;
``start_server``, ``stop_server`` and ``server_status`` are ``taskmark server``. The modules:
``_local`` (start, stop, status, its state file), ``_process`` (the server's process and its
health), ``_app`` (Prefect's application, with SQLite transactions begun ``IMMEDIATE``) and
``_crashes`` (runs whose process died marked Crashed, whatever the server's downtime).
Names are imported on first use: the server's own process imports this package and must not
pay for anything else (nor ever import litellm).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "LocalServerError",
    "ServerStatus",
    "connect",
    "ensure_server",
    "server_status",
    "start_server",
    "stop_server",
]

if TYPE_CHECKING:
    from taskmark.server._local import (
        LocalServerError,
        ServerStatus,
        connect,
        ensure_server,
        server_status,
        start_server,
        stop_server,
    )


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the name is
    import importlib

    if name in __all__:
        return getattr(importlib.import_module("taskmark.server._local"), name)
    raise AttributeError(f"module 'taskmark.server' has no attribute {name!r}")
