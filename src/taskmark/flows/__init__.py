"""Compiling a definition into Prefect flows: its phases scheduled as concurrent subflows,
its run record written as they go, the artifacts people read rendered from that record;
running, retrying and steering a run.

``compile`` turns a definition into a Prefect flow. It is imported on first use, so that
importing this package costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["compile"]

if TYPE_CHECKING:
    from taskmark.flows._compile import compile


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the name is
    import importlib

    if name == "compile":
        return importlib.import_module("taskmark.flows._compile").compile
    raise AttributeError(f"module 'taskmark.flows' has no attribute {name!r}")
