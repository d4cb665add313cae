"""Processes of the local server: start one detached, check it, stop it.

Knows nothing of Prefect: commands and environments come from
:mod:`taskmark.server._local`.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from taskmark._polling import wait_until
from taskmark.errors import TaskmarkError

__all__ = [
    "APP",
    "HOST",
    "LocalServerError",
    "alive",
    "free_port",
    "healthy",
    "is_our_server",
    "launch",
    "log_tail",
    "port_taken",
    "terminate",
    "wait_healthy",
]

APP = "taskmark.server._app:create_app"
HOST = "127.0.0.1"
# The server's command line names its app; it tells our server from a process that was
# given the same pid after ours died (pids are reused, state files outlive reboots).
_MARKERS = (APP.split(":", 1)[0].encode(), b"taskmark.flows._server_app")
"""How a server's command line names it: its module now, and where taskmark kept it before
(a server started by that version is still stopped, or reused, by this one)."""
# The last line of a Python traceback: `package.module.SomeError: message`.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b")

# Run in a short-lived intermediate process, which starts the server in a new session and
# exits: the server is then nobody's child (init reaps it), so it survives the caller, the
# caller never owns a Popen it cannot wait for, and a terminal's Ctrl-C does not reach it.
_LAUNCHER = """
import subprocess, sys
with open(sys.argv[1], "ab") as log:
    server = subprocess.Popen(
        sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, close_fds=True,
    )
print(server.pid)
"""


class LocalServerError(TaskmarkError):
    """The local Prefect server could not be started or stopped.

    The message names the log file to read.
    """


def launch(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> int:
    """Start ``command`` detached (new session, not our child); its pid."""
    with log.open("a") as out:
        out.write(
            f"--- {datetime.now(timezone.utc).isoformat(timespec='seconds')} taskmark starts: {' '.join(command)}\n"
        )
    # -I -S: the launcher needs only the standard library; start it fast and unaffected
    # by PYTHON* variables. cwd=PREFECT_HOME: the server holds no user folder open.
    launcher = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(log), *command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if launcher.returncode != 0 or not launcher.stdout.strip().isdigit():
        raise LocalServerError(f"could not start the local Prefect server: {launcher.stderr.strip()}")
    return int(launcher.stdout.strip())


def wait_healthy(pid: int, api_url: str, deadline: float) -> bool:
    """Poll ``/api/health`` until it answers (True), the process exits or the deadline passes."""
    answered_or_gone = wait_until(lambda: healthy(api_url) or not is_our_server(pid), deadline=deadline, interval=0.1)
    return answered_or_gone and is_our_server(pid)


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True if ``GET {api_url}/health`` answers 200 within ``timeout`` seconds."""
    # http.client rather than urllib: no proxy from the environment applies to 127.0.0.1.
    url = urlsplit(api_url)
    connection = http.client.HTTPConnection(url.hostname or HOST, url.port, timeout=timeout)
    try:
        connection.request("GET", url.path.rstrip("/") + "/health")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM the server's process group, SIGKILL it after ``timeout`` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            # The server leads its own session and group: this also reaches any
            # process it started.
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError as error:
            raise LocalServerError(f"cannot stop process {pid}: {error}") from None
        if wait_until(lambda: not alive(pid), deadline=time.monotonic() + wait):
            return
    raise LocalServerError(f"process {pid} survived SIGKILL")


def alive(pid: int) -> bool:
    """True if ``pid`` runs and has not exited (a zombie counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # A zombie (exited, not yet reaped) still answers signal 0.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def is_our_server(pid: int) -> bool:
    """True if ``pid`` is alive and runs taskmark's server app (not a reused pid)."""
    if not alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return any(marker in cmdline for marker in _MARKERS)
    except OSError:
        # No /proc (macOS): the health check against the recorded port decides.
        return True


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def port_taken(port: int) -> bool:
    """Whether something holds ``port`` of 127.0.0.1 now, so that a server could not listen on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: connections of a server stopped a moment ago, still in
        # TIME_WAIT, do not keep a new server off its port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
        return False


def _read_log(log: Path) -> str:
    """The log's text; empty if it cannot be read."""
    try:
        return log.read_text(errors="replace")
    except OSError:
        return ""


def log_tail(log: Path) -> str:
    """The lines of the log that say why the server stopped: its last exception, last line."""
    lines = [line.rstrip() for line in _read_log(log).splitlines() if line.strip()]
    errors = [line for line in lines if _EXCEPTION_LINE.match(line)]
    picked = ([errors[-1]] if errors else lines[-5:-1]) + lines[-1:]
    return "\n".join("  " + line for line in dict.fromkeys(picked))
