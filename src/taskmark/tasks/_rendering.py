"""Rendering templates off the event loop, so one that runs long never holds up a run.

The sandbox bounds a render in size and time (:mod:`taskmark.definition._sandbox`); this
module keeps the event loop free while it runs, so ``maxExecutionTime`` and cancellation
fire on time whatever a template does. A wait that ends early (a run that timed out) stops
the render at its next check; the thread is a daemon, so it never holds up the process's exit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from taskmark.definition._sandbox import stop_renders_on
from taskmark.errors import TaskmarkError

if TYPE_CHECKING:
    from taskmark.definition import AgentStep

__all__ = ["PromptError", "off_loop", "prompt_of", "render_prompt"]

T = TypeVar("T")


class PromptError(TaskmarkError):
    """A template of the definition could not be rendered; the message names it and where it is."""


async def off_loop(function: Callable[..., T], *args: Any) -> T:  # noqa: ANN401
    """``function(*args)`` in a thread of its own, awaited without blocking the event loop.

    Renders in it stop at their next check once the wait ends (cancelled or done).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    stop = threading.Event()

    def deliver(settle: Callable[[Any], None], value: object) -> None:
        def settled() -> None:
            if not done.done():
                settle(value)

        try:
            loop.call_soon_threadsafe(settled)
        except RuntimeError:
            pass  # the loop is closed: nobody waits for this any more

    def work() -> None:
        with stop_renders_on(stop):
            try:
                result = function(*args)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting coroutine
                deliver(done.set_exception, exc)
            else:
                deliver(done.set_result, result)

    threading.Thread(target=work, name="taskmark-render", daemon=True).start()
    try:
        return await done
    finally:
        stop.set()


async def render_prompt(what: str, function: Callable[..., str], *args: Any) -> str:  # noqa: ANN401
    """Render a template of the definition off the event loop: ``function(*args)``, which is
    :func:`~taskmark.definition.render_template` or a layout built on it.

    Args:
        what: The template, for messages: "the prompt of agent 'writer' (flow.md:12:3)".
        function: What renders it.
        *args: Its arguments.

    Raises:
        PromptError: The template failed (an undefined name, a bound of the sandbox, an
            error in an expression), with ``what`` and the reason.
    """
    try:
        return await off_loop(function, *args)
    except Exception as exc:  # whatever a template raises, say which one it was
        raise PromptError(f"{what} could not be rendered: {exc}") from exc


def prompt_of(kind: str, step: AgentStep) -> str:
    """A step's prompt, for messages: "the prompt of agent 'writer' (flow.md:12:3)"."""
    return f"the prompt of {kind} '{step.agent}' ({step.location})"
