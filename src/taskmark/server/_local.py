"""taskmark's local Prefect server: started on first use, reused by every later run.

Prefect's ephemeral mode starts a server inside each process (7.5–17 s each time) that no
other process can reach: no UI, no resume, no cancel. Instead taskmark starts one Prefect
server in the background, on a free port of 127.0.0.1 with its SQLite database under
``PREFECT_HOME``, and every later run reuses it. It is Prefect's own server (API, UI and
background services, as under ``prefect server start``) with SQLite transactions begun
``IMMEDIATE`` (see :mod:`taskmark.server._app` for why).

Files under ``PREFECT_HOME``:

- ``taskmark-server.json``: the server (pid, port, api_url, started_at). Kept when it stops,
  with ``pid`` and ``started_at`` null, so that the next start listens on the same port and
  the UI address a user has open (or bookmarked) keeps working.
- ``taskmark-server.log``: its output; the previous start's log is kept as ``.log.1``.
- ``taskmark-server.lock``: serializes starting and stopping across processes.

When ``PREFECT_API_URL`` is set (environment, profile or ``prefect.toml``),
:func:`ensure_server` returns it and starts nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from taskmark._files import locked, write_whole
from taskmark.errors import TaskmarkError
from taskmark.server._process import (
    APP,
    HOST,
    LocalServerError,
    free_port,
    healthy,
    is_our_server,
    launch,
    log_tail,
    port_taken,
    terminate,
    wait_healthy,
)

__all__ = [
    "LocalServerError",
    "ServerStatus",
    "connect",
    "ensure_server",
    "server_status",
    "start_server",
    "started_message",
    "stop_server",
]

STATE_FILE = "taskmark-server.json"
LOG_FILE = "taskmark-server.log"
LOCK_FILE = "taskmark-server.lock"

DEFAULT_STARTUP_TIMEOUT = 60.0
"""Seconds to wait for ``/api/health``: it answers after ~8–10 s on SQLite, ~11 s on
PostgreSQL, and later on a loaded machine."""

DEFAULT_STOP_TIMEOUT = 15.0
"""Seconds between SIGTERM and SIGKILL: Prefect stops its services on SIGTERM."""


@dataclass(frozen=True)
class ServerStatus:
    """What is known about taskmark's local Prefect server."""

    running: bool
    """True when the recorded process is alive and answers ``/api/health``."""
    pid: int | None
    """The server's process id, while that process is alive."""
    api_url: str | None
    """The Prefect API address, e.g. ``http://127.0.0.1:PORT/api``, while the process is alive."""
    ui_url: str | None
    """The Prefect UI address, while the process is alive."""
    database_url: str
    """Where Prefect keeps its data (password hidden)."""
    log_path: Path
    """The server's log file."""
    started_at: str | None = None
    """When the server was started, ISO 8601 in UTC."""
    started: bool = False
    """True when the call that returned this status started the server's process."""
    moved_from: int | None = None
    """When this call started the server on a new port: the port the previous server of this
    ``PREFECT_HOME`` listened on, which something else now holds (its UI address changed)."""


@dataclass(frozen=True)
class _State:
    pid: int | None
    """None once the server was stopped: the record then only keeps its port."""
    port: int
    api_url: str
    started_at: str | None


@dataclass(frozen=True)
class _Paths:
    home: Path
    state: Path
    log: Path
    lock: Path


# -- public API ------------------------------------------------------------------------------


def ensure_server(*, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT) -> str:
    """The Prefect API to run flows against, starting taskmark's local server if needed.

    ``PREFECT_API_URL``, when set, wins and nothing is started. Otherwise the local server
    recorded under ``PREFECT_HOME`` is reused if it is alive and healthy, or a new one is
    started in the background and waited for. Processes calling this at the same time end
    with one server. When it starts one, it says so in one line on stderr
    (:func:`started_message`). Blocking: call it before the event loop, or with
    ``asyncio.to_thread``.

    This is the one choice of a Prefect API for the CLI and the Python API
    (``taskmark.run``/``arun``/``aretry``): both reach it through :func:`connect`.

    Args:
        startup_timeout: Seconds to wait for a new server's ``/api/health``.

    Returns:
        The API URL, e.g. ``http://127.0.0.1:PORT/api``. To point this process's Prefect
        client at it, use :func:`connect`.

    Raises:
        LocalServerError: The server did not start in time, or the recorded one is alive
            but does not answer.

    Example:
        >>> url = ensure_server()
        >>> subprocess.run(["prefect", "flow-run", "ls"], env={**os.environ, "PREFECT_API_URL": url})
    """
    from prefect.settings import get_current_settings

    configured = get_current_settings().api.url
    if configured:
        return configured
    status = start_server(startup_timeout=startup_timeout)
    assert status.api_url is not None  # start_server returns only a running server
    if status.started:
        # The one line the library writes: a process now runs in the background on the
        # caller's behalf, and the address to open is news (the UI link of a run that
        # started it, or a new port).
        print(started_message(status), file=sys.stderr)
    return status.api_url


def started_message(status: ServerStatus) -> str:
    """What to tell a user about a server :func:`start_server` started.

    Example:
        >>> started_message(start_server())
        'started the local Prefect server at http://127.0.0.1:36693/api (UI: http://127.0.0.1:36693)'
    """
    message = f"started the local Prefect server at {status.api_url} (UI: {status.ui_url})"
    if status.moved_from is not None:
        message += f"; port {status.moved_from}, where it listened before, is taken by another program"
    return message


def connect(*, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT) -> str:
    """Point this process's Prefect client, and its child processes, at :func:`ensure_server`,
    with flow-run heartbeats on (they tell the server a run's process is alive; see
    :mod:`taskmark.server._crashes`).

    Prefect reads its settings once, when it is imported; setting ``PREFECT_API_URL`` in
    ``os.environ`` afterwards changes nothing, and the next flow would quietly start an
    ephemeral server. This sets the variable and refreshes Prefect's process-wide
    settings, so every thread sees the address (a ``temporary_settings`` block would be
    seen only by its own context).

    Args:
        startup_timeout: Seconds to wait for a new server's ``/api/health``.

    Returns:
        The API URL now in use.

    Raises:
        LocalServerError: The local server did not start.

    Example:
        >>> connect()
        'http://127.0.0.1:36693/api'
        >>> my_flow()  # recorded on that server, visible in its UI
    """
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    from taskmark.server._crashes import enable_heartbeats

    url = ensure_server(startup_timeout=startup_timeout)
    enable_heartbeats()
    if os.environ.get("PREFECT_API_URL") != url or get_current_settings().flows.heartbeat_frequency is None:
        os.environ["PREFECT_API_URL"] = url
        refresh_global_settings_context()
    return url


def start_server(*, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT) -> ServerStatus:
    """Start taskmark's local server, or reuse the one already running.

    Unlike :func:`ensure_server`, ignores ``PREFECT_API_URL``: this is the server of
    ``taskmark server start``. A new server listens on the port of this ``PREFECT_HOME``'s
    previous one when that port is free (``moved_from`` says when it was not).

    Args:
        startup_timeout: Seconds to wait for a new server's ``/api/health``.

    Returns:
        The status of the running server; ``started`` is True when this call started it.

    Raises:
        LocalServerError: The server did not start in time, or its process exited, or the
            recorded one is alive but does not answer (it is left running: it may be busy
            with runs), or ``TASKMARK_HEARTBEAT_TIMEOUT_S`` is invalid.
    """
    paths = _paths()
    with locked(paths.lock):
        state = _read_state(paths.state)
        if state is not None and state.pid is not None:
            if is_our_server(state.pid):
                # Healthy: reuse at once. Still starting (its starter was killed before
                # it was ready): give it the rest of its start-up time.
                deadline = max(time.monotonic() + 10.0, _monotonic_deadline(state, startup_timeout))
                if wait_healthy(state.pid, state.api_url, deadline):
                    return _status(paths, state)
                if is_our_server(state.pid):
                    # Alive but silent: it may be busy with someone's runs, so it is not
                    # ours to kill; say so, and let the user stop it.
                    raise LocalServerError(
                        f"the local Prefect server (pid {state.pid}) does not answer at "
                        f"{state.api_url}; stop it with `taskmark server stop`; see {paths.log}"
                    )
        new, moved_from = _spawn(paths, startup_timeout, previous=state)
        return replace(_status(paths, new), started=True, moved_from=moved_from)


def stop_server(*, timeout: float = DEFAULT_STOP_TIMEOUT) -> bool:
    """Stop taskmark's local server: SIGTERM, then SIGKILL after ``timeout`` seconds.

    Args:
        timeout: Seconds to wait for a graceful exit before killing it.

    The state file keeps the server's port, for the next start.

    Returns:
        True if a server process was stopped; False if none was running (a stale state
        file is marked stopped all the same).

    Raises:
        LocalServerError: The process survived SIGKILL (it belongs to another user).
    """
    paths = _paths()
    with locked(paths.lock):
        state = _read_state(paths.state)
        if state is None or state.pid is None:
            return False
        stopped = False
        if is_our_server(state.pid):
            terminate(state.pid, timeout)
            stopped = True
        _write_state(paths.state, _stopped(state))
        return stopped


def server_status() -> ServerStatus:
    """The local server's status; does not wait for a server that is starting.

    Returns:
        ``running`` is True when the recorded process is alive and healthy.
    """
    paths = _paths()
    return _status(paths, _read_state(paths.state))


# -- processes -------------------------------------------------------------------------------


def _spawn(paths: _Paths, startup_timeout: float, previous: _State | None) -> tuple[_State, int | None]:
    """Start a server, record it, and wait until it is healthy; the port ``previous``
    listened on when it is free, else a free one (and then that previous port, second)."""
    from taskmark.server._crashes import heartbeat_timeout

    try:
        heartbeat_timeout()  # the server's crash sweep reads it; a bad value fails here, not there
    except TaskmarkError as error:
        raise LocalServerError(str(error)) from None
    previous_port = previous.port if previous is not None else None
    wanted = previous_port
    for attempt in range(2):
        port = wanted if wanted is not None and not port_taken(wanted) else free_port()
        api_url = f"http://{HOST}:{port}/api"
        _rotate_log(paths.log)
        pid = launch(_server_command(port), _server_env(paths.home, api_url), paths.home, paths.log)
        state = _State(pid=pid, port=port, api_url=api_url, started_at=_now())
        # Recorded before it is ready, so that `stop` and a later `ensure_server` find a
        # server whose starter was killed while waiting.
        _write_state(paths.state, state)
        try:
            if wait_healthy(pid, api_url, time.monotonic() + startup_timeout):
                asyncio.run(_set_up(api_url))
                return state, (previous_port if previous_port not in (None, port) else None)
        except BaseException:
            # Ctrl-C while waiting: leave no half-started server behind.
            terminate(pid, DEFAULT_STOP_TIMEOUT)
            _forget(paths, previous)
            raise
        alive = is_our_server(pid)
        terminate(pid, DEFAULT_STOP_TIMEOUT)
        _forget(paths, previous)
        tail = log_tail(paths.log)
        # Another process took the port between our probe and the server's bind (a server
        # that failed to bind may hang in its shutdown rather than exit, so alive or not).
        if attempt == 0 and port_taken(port):
            wanted = None
            continue
        reason = "exited" if not alive else f"did not answer {api_url}/health within {startup_timeout:g} s"
        raise LocalServerError(f"the local Prefect server {reason}; see {paths.log}" + (f":\n{tail}" if tail else ""))
    raise AssertionError("unreachable")  # pragma: no cover


async def _set_up(api_url: str) -> None:
    """What a new server needs beyond Prefect's defaults: crashed runs detected (see _crashes)."""
    from prefect.client.orchestration import PrefectClient

    from taskmark.server._crashes import ensure_crash_automation

    async with PrefectClient(api_url) as client:
        await ensure_crash_automation(client)


def _server_command(port: int) -> list[str]:
    from prefect.settings import get_current_settings

    settings = get_current_settings().server
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        APP,
        "--host",
        HOST,
        "--port",
        str(port),
        # As `prefect server start` passes them.
        "--timeout-keep-alive",
        str(settings.api.keepalive_timeout),
        "--ws-ping-interval",
        str(settings.api.websocket_ping_interval),
        "--ws-ping-timeout",
        str(settings.api.websocket_ping_timeout),
        "--log-level",
        str(settings.logging_level).lower(),
        # One line per API call would grow the log of a long-lived server without bound;
        # Prefect logs failures itself.
        "--no-access-log",
    ]


def _server_env(home: Path, api_url: str) -> dict[str, str]:
    from prefect.settings import get_current_settings

    database_url = get_current_settings().server.database.connection_url
    env = dict(os.environ)
    env.update(
        {
            # Resolved here, so the server uses the home and database this process sees
            # even if they came from a profile or a prefect.toml in the caller's folder.
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url.get_secret_value() if database_url else "",
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url.get_secret_value() if database_url else "",
            # The UI asks the browser to call this address; its default is port 4200.
            "PREFECT_SERVER_UI_API_URL": api_url,
            "PREFECT_UI_API_URL": api_url,
            "PREFECT_API_URL": api_url,
            # What `prefect server start` sets: the app is built once per process.
            "PREFECT__SERVER_FINAL": "1",
        }
    )
    if not database_url:
        del env["PREFECT_SERVER_DATABASE_CONNECTION_URL"], env["PREFECT_API_DATABASE_CONNECTION_URL"]
    # A local server phones no one home unless the user says otherwise.
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    return env


# -- files -----------------------------------------------------------------------------------


def _paths() -> _Paths:
    from prefect.settings import get_current_settings

    home = Path(get_current_settings().home).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return _Paths(home=home, state=home / STATE_FILE, log=home / LOG_FILE, lock=home / LOCK_FILE)


def _read_state(path: Path) -> _State | None:
    try:
        data = json.loads(path.read_text())
        return _State(
            pid=None if data["pid"] is None else int(data["pid"]),
            port=int(data["port"]),
            api_url=str(data["api_url"]),
            started_at=None if data["started_at"] is None else str(data["started_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        # Missing or unreadable (hand-edited, truncated by a full disk): no server known.
        return None


def _stopped(state: _State) -> _State:
    """The record of a stopped server: its address only."""
    return replace(state, pid=None, started_at=None)


def _forget(paths: _Paths, previous: _State | None) -> None:
    """After a failed start: the previous server's address stays on record, if there was one."""
    if previous is None:
        paths.state.unlink(missing_ok=True)
    else:
        _write_state(paths.state, _stopped(previous))


def _write_state(path: Path, state: _State) -> None:
    write_whole(path, json.dumps(asdict(state), indent=2) + "\n")


def _rotate_log(log: Path) -> None:
    if log.exists() and log.stat().st_size > 0:
        os.replace(log, log.with_name(log.name + ".1"))


def _status(paths: _Paths, state: _State | None) -> ServerStatus:
    from prefect.settings import get_current_settings

    database_url = get_current_settings().server.database.connection_url
    alive = state is not None and state.pid is not None and is_our_server(state.pid)
    return ServerStatus(
        running=alive and state is not None and healthy(state.api_url),
        pid=state.pid if alive and state else None,
        api_url=state.api_url if alive and state else None,
        ui_url=state.api_url.removesuffix("/api") if alive and state else None,
        database_url=_hide_password(database_url.get_secret_value() if database_url else ""),
        log_path=paths.log,
        started_at=state.started_at if alive and state else None,
    )


def _hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _monotonic_deadline(state: _State, startup_timeout: float) -> float:
    """When a server recorded at ``state.started_at`` should have become healthy."""
    try:
        started = datetime.fromisoformat(state.started_at or "").timestamp()
    except ValueError:
        return 0.0
    return time.monotonic() + (started + startup_timeout - time.time())
