"""Stage handlers named by import path (`handlers: {preProcessing: "pkg.mod:fn"}`).

The only way a definition runs Python of its own: a function it names explicitly.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from taskmark.tasks._context import StageResult

__all__ = ["call_handler", "load_handler"]


def load_handler(ref: str) -> Callable[..., Any]:
    """The function at ``package.module:function``.

    Raises:
        ImportError: The module or function does not exist.
    """
    module_name, _, name = ref.partition(":")
    function: object = getattr(importlib.import_module(module_name), name, None)
    if not callable(function):
        raise ImportError(f"handler {ref!r}: {module_name} has no function {name!r}")
    return function


async def call_handler(ref: str, view: dict[str, Any]) -> StageResult:
    """Call a handler with the run's view; it may be async and may return a StageResult,
    a mapping with ``data``/``flags``/``logs``, or None."""
    result = load_handler(ref)(view)
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return StageResult()
    return result if isinstance(result, StageResult) else StageResult.model_validate(result)
