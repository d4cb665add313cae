"""Custom step kinds: a decorator in code, or the `taskmark.step_strategies` entry point.

A strategy is a function ``(argument, names) -> value`` (sync or async): ``argument`` is the
text after ``KIND:`` rendered as a template, ``names`` what templates see. Its value is the
step's output (``steps["KIND"]`` in later templates of the phase).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from taskmark.definition import CustomStep, register_step_kind, render_template
from taskmark.definition._registry import ENTRY_POINT_GROUP
from taskmark.tasks._rendering import render_prompt

__all__ = ["run_custom_step", "step_strategy"]

F = TypeVar("F", bound=Callable[..., Any])
_STRATEGIES: dict[str, Callable[..., Any]] = {}


def step_strategy(kind: str) -> Callable[[F], F]:
    """Register a function as the strategy of step kind ``kind``.

    Example:
        >>> @step_strategy("shout")
        ... def shout(argument: str, names: dict) -> str:
        ...     return argument.upper()
    """

    def register(function: F) -> F:
        register_step_kind(kind)
        _STRATEGIES[kind] = function
        return function

    return register


@functools.cache
def _from_entry_point(kind: str) -> Callable[..., Any] | None:
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=kind):
        loaded: Callable[..., Any] = entry.load()
        return loaded
    return None


async def run_custom_step(step: CustomStep, names: dict[str, Any]) -> Any:  # noqa: ANN401
    """Run a custom step.

    Raises:
        LookupError: No strategy is registered for its kind in this process.
    """
    function = _STRATEGIES.get(step.kind) or _from_entry_point(step.kind)
    if function is None:
        raise LookupError(f"no strategy registered for step kind '{step.kind}'")
    argument = await render_prompt(
        f"the argument of step '{step.kind}:' ({step.location})", render_template, step.argument, names
    )
    result = function(argument, names)
    return await result if inspect.isawaitable(result) else result
