"""The Python API's entry points, ``taskmark.run``, ``arun``, ``aretry`` and ``read_run``, on the CLI's Prefect API.

Without ``PREFECT_API_URL``, Prefect would run a flow on an ephemeral server started inside
this process: 7.5–17 s before the first flow, SQLite lock stalls ("database is locked"), and
nothing another process can reach (no UI, no resume, no cancel). The entry points first
:func:`~taskmark.server.connect`, as every CLI command does: ``PREFECT_API_URL`` when it is
set, else taskmark's local server, started if needed. The engine in
:mod:`taskmark.runs._run` runs against whatever API is current, so ``taskmark run
--ephemeral`` still can choose Prefect's ephemeral server.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from taskmark.runs import _read, _run
from taskmark.server._local import connect

__all__ = ["aread_run", "aretry", "arun", "read_run", "run"]

P = ParamSpec("P")
T = TypeVar("T")


def _connected(function: Callable[P, T]) -> Callable[P, T]:
    """``function``, called once this process's Prefect client points at the CLI's API."""

    @functools.wraps(function)
    def connected(*args: P.args, **kwargs: P.kwargs) -> T:
        connect()
        return function(*args, **kwargs)

    return connected


def _aconnected(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """The coroutine function ``function``, awaited once this process points at the CLI's API."""

    @functools.wraps(function)
    async def connected(*args: P.args, **kwargs: P.kwargs) -> T:
        # connect() may wait ~10 s for a new server: not on the caller's event loop.
        await asyncio.to_thread(connect)
        return await function(*args, **kwargs)

    return connected


run = _connected(_run.run)
arun = _aconnected(_run.arun)
aretry = _aconnected(_run.aretry)
read_run = _connected(_read.read_run)
aread_run = _aconnected(_read.aread_run)
