"""The ASGI application of taskmark's local Prefect server.

Loaded only inside the server process, by uvicorn::

    python -m uvicorn --factory taskmark.server._app:create_app --host 127.0.0.1 --port P

It is Prefect's own application (``prefect.server.api.server.create_app``) with one change
on SQLite: every transaction begins ``IMMEDIATE``.

Why: writers then queue on ``busy_timeout`` instead of failing with HTTP 503 when two
transactions overlap (see :mod:`taskmark._engine`, where every change taskmark makes to
Prefect's own behaviour lives).

A PostgreSQL connection URL keeps Prefect's configuration unchanged.

Once the server has been up for the heartbeat timeout, it marks Crashed the runs that were
running when it started and have sent no heartbeat since (see
:mod:`taskmark.server._crashes`): Prefect's automation cannot see a run whose process died
while the server was down.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from prefect.server.database import dependencies
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

from taskmark._engine import immediate_sqlite_configuration

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app"]

logger = logging.getLogger("taskmark.server")


def _is_sqlite(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] == "sqlite"


def create_app() -> FastAPI:
    """Prefect's server application: REST API, UI and background services.

    Services and UI run as under ``prefect server start``: ``PREFECT__SERVER_FINAL`` and
    ``PREFECT__SERVER_WEBSERVER_ONLY`` in the environment are read by Prefect's factory,
    and migrations run in the application's lifespan when
    ``PREFECT_API_DATABASE_MIGRATE_ON_START`` is true (the default).

    Returns:
        The application for uvicorn.
    """
    from prefect.server.api.server import create_app as create_prefect_app

    url = PREFECT_API_DATABASE_CONNECTION_URL.value()
    if _is_sqlite(url):
        # Set before the first request or service asks for the database interface, so
        # the API, the services and the migrations all use the same configuration.
        dependencies.MODELS_DEPENDENCIES["database_config"] = immediate_sqlite_configuration(url)
    app = create_prefect_app(final=True)
    # taskmark's launcher sets the address the server answers on; its sweep calls it there.
    api_url = os.environ.get("PREFECT_API_URL")
    if api_url:
        app.router.lifespan_context = _with_crash_sweep(app.router.lifespan_context, api_url)
    return app


def _with_crash_sweep(
    lifespan: Callable[[Any], AbstractAsyncContextManager[Any]], api_url: str
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """Prefect's lifespan, plus the crash sweep started once the server is up."""

    @asynccontextmanager
    async def with_sweep(app: Any) -> AsyncIterator[Any]:  # noqa: ANN401 - whatever Prefect's lifespan yields
        async with lifespan(app) as state:
            sweep = asyncio.create_task(_sweep_when_due(api_url, datetime.now(timezone.utc)))
            try:
                yield state
            finally:
                sweep.cancel()

    return with_sweep


async def _sweep_when_due(api_url: str, started: datetime) -> None:
    """After the heartbeat timeout, mark Crashed the runs no heartbeat has come from since ``started``."""
    from prefect.client.orchestration import PrefectClient

    from taskmark.server._crashes import crash_silent_runs, heartbeat_timeout

    try:
        await asyncio.sleep(heartbeat_timeout())
        async with PrefectClient(api_url) as client:
            await crash_silent_runs(client, server_started=started)
    except Exception:
        # Never take the server down: the runs stay Running, as they would have without it.
        logger.exception("Could not look for runs whose process is gone")
