"""Waiting, in a blocking caller, for something another process does (a server comes up, a
process exits): one loop with a deadline instead of one per caller."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_until"]


def wait_until(done: Callable[[], bool], *, deadline: float, interval: float = 0.05) -> bool:
    """Call ``done`` every ``interval`` seconds until it is true (True) or ``time.monotonic()``
    passes ``deadline`` (False); ``done`` is called at least once."""
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
