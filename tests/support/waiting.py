"""Waiting for a condition in tests: the one polling loop every test uses.

``await eventually(check)`` calls ``check`` until it returns something truthy (which it
returns) and fails with an ``AssertionError`` naming what it waited for after ``timeout``
seconds. ``check`` may be sync or async; an ``AssertionError`` it raises counts as "not yet"
(so a check can be written as asserts), any other exception ends the wait at once.
``eventually_sync`` is the same for sync tests.

The timeout is a deadline, not a timed assertion: it only turns a hang into a failure with a
message, so it is generous (the machine is shared and may be slow).

Example:
    >>> await eventually(lambda: server.count >= 2, message="the second request")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

__all__ = ["DEFAULT_TIMEOUT_S", "eventually", "eventually_sync"]

DEFAULT_TIMEOUT_S = 120.0
"""How long a condition may take to come true before the test fails."""


class _Poll:
    """The deadline and the last outcome of one wait; both ``eventually`` flavours drive it."""

    def __init__(self, timeout: float, interval: float, message: str) -> None:
        self.timeout = timeout
        self.interval = interval
        self.message = message
        self.deadline = time.monotonic() + timeout
        self.attempts = 0
        self.last: Any = None
        self.error: AssertionError | None = None

    def done(self, value: Any) -> bool:
        """Record a value ``check`` returned; True if it ends the wait."""
        self.attempts += 1
        self.last, self.error = value, None
        return bool(value)

    def failed(self, error: AssertionError) -> None:
        """Record an ``AssertionError`` ``check`` raised: not yet."""
        self.attempts += 1
        self.last, self.error = None, error

    def pause(self) -> float:
        """Seconds to wait before the next attempt; raises ``AssertionError`` once the deadline has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            last = f"last check failed: {self.error}" if self.error is not None else f"last value: {self.last!r}"
            raise AssertionError(
                f"timed out after {self.timeout:g} s ({self.attempts} checks) waiting for {self.message}; {last}"
            ) from self.error
        return min(self.interval, left)


async def eventually(
    check: Callable[[], Any],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float = 0.1,
    message: str = "the condition",
) -> Any:
    """Call ``check`` (sync or async) until it returns something truthy; that value.

    Raises:
        AssertionError: ``timeout`` seconds passed first; names ``message`` and the last
            value or the last ``AssertionError`` of ``check``.
    """
    poll = _Poll(timeout, interval, message)
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except AssertionError as error:
            poll.failed(error)
        else:
            if poll.done(value):
                return value
        await asyncio.sleep(poll.pause())


def eventually_sync(
    check: Callable[[], Any],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float = 0.1,
    message: str = "the condition",
) -> Any:
    """``eventually`` for sync tests: ``check`` is a plain callable; blocks between attempts."""
    poll = _Poll(timeout, interval, message)
    while True:
        try:
            value = check()
        except AssertionError as error:
            poll.failed(error)
        else:
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()
                raise TypeError("eventually_sync got an async check; use `await eventually(...)`")
            if poll.done(value):
                return value
        time.sleep(poll.pause())
