"""The ASGI application of taskmark's local Prefect server.

Loaded only inside the server process, by uvicorn::

    python -m uvicorn --factory taskmark.server._app:create_app --host 127.0.0.1 --port P

It is Prefect's own application (``prefect.server.api.server.create_app``) with one change
on SQLite: every transaction begins ``IMMEDIATE``.

Why: Prefect begins most write transactions ``DEFERRED``; they read first and then write.
When two such transactions overlap, SQLite cannot upgrade the second one's read lock to a
write lock without risking a deadlock, so it fails at once with ``database is locked``
(``busy_timeout`` does not apply to a lock upgrade). Prefect answers HTTP 503, and the
client backs off 2, 4, 8 s. Concurrent subflows create their parent task runs at the same
moment, so a flow with four gathered async subflows took 10 s instead of 1.2 s. Beginning
``IMMEDIATE`` takes the write lock up front, and a second writer waits on ``busy_timeout``
(60 s in Prefect) instead of failing: the same flow then took 2.3 s with no 503.
Readers are not affected: WAL mode lets them read while a writer holds the lock.

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
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from prefect.server.database import dependencies
from prefect.server.database.configurations import AioSqliteConfiguration
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

__all__ = ["ImmediateSqliteConfiguration", "create_app"]

logger = logging.getLogger("taskmark.server")


class ImmediateSqliteConfiguration(AioSqliteConfiguration):
    """Prefect's SQLite configuration, with every transaction begun ``IMMEDIATE``."""

    @asynccontextmanager
    async def begin_transaction(
        self, session: AsyncSession, with_for_update: bool = False
    ) -> AsyncGenerator[AsyncSessionTransaction, None]:
        """Begin a transaction that holds SQLite's write lock from its first statement.

        Args:
            session: The session to begin the transaction on.
            with_for_update: Ignored: every transaction is begun as if it were ``True``.

        Yields:
            The transaction.
        """
        # Prefect maps with_for_update=True to BEGIN IMMEDIATE (its stand-in for
        # SELECT ... FOR UPDATE on SQLite); asking for it always makes every writer queue
        # on busy_timeout instead of failing on a read-to-write lock upgrade.
        async with super().begin_transaction(session, with_for_update=True) as transaction:
            yield transaction


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
        dependencies.MODELS_DEPENDENCIES["database_config"] = ImmediateSqliteConfiguration(connection_url=url)
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
