"""The compiler and the local server.

``compile`` turns a definition into a Prefect flow whose phases are concurrent subflows;
``connect`` points Prefect at ``PREFECT_API_URL`` or at taskmark's local server, started on
first use. Names are imported on first use: the local server's own process imports this
package and must not pay for the compiler (nor ever import litellm).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "LocalServerError",
    "ServerStatus",
    "compile",
    "connect",
    "ensure_server",
    "server_status",
    "start_server",
    "stop_server",
]

if TYPE_CHECKING:
    from taskmark.flows._compile import compile
    from taskmark.flows._local_server import (
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

    if name == "compile":
        return importlib.import_module("taskmark.flows._compile").compile
    if name in __all__:
        return getattr(importlib.import_module("taskmark.flows._local_server"), name)
    raise AttributeError(f"module 'taskmark.flows' has no attribute {name!r}")
