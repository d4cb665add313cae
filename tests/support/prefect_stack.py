"""A real Prefect stack for end-to-end tests: `prefect server start`, workers, CLI calls.

Everything runs as the user would run it: separate processes started with the same command
lines docs/deploying.md shows, on 127.0.0.1, with a temporary ``PREFECT_HOME``. Prefect's
default port in those command lines (4200) is replaced by a free port.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.waiting import eventually_sync

__all__ = ["BIN", "DEFAULT_PORT", "PrefectStack", "flow_run_id_in", "free_port", "wait_final", "wait_for"]

BIN = Path(sys.executable).parent
"""Where `prefect` and `taskmark` are installed (the test interpreter's venv)."""

DEFAULT_PORT = 4200
"""The port the docs' command lines use; tests substitute a free one."""

_SERVER_START_TIMEOUT = 120.0
_STOP_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, what: str, timeout: float = 120.0, every: float = 0.5) -> Any:
    """Poll ``predicate()`` until it returns something truthy; fail naming ``what`` after ``timeout`` s.

    :func:`support.waiting.eventually_sync` with this module's slower default interval, except
    that an ``AssertionError`` from ``predicate`` (a process that died, say) fails at once.
    Not a timed assertion: the timeout only turns a hang into a failure with a message.
    """

    def check() -> Any:
        try:
            return predicate()
        except AssertionError as error:
            raise _Fatal(error) from error

    try:
        return eventually_sync(check, timeout=timeout, interval=every, message=what)
    except _Fatal as fatal:
        raise fatal.error from None


class _Fatal(Exception):
    """An ``AssertionError`` that must end the wait, carried past ``eventually_sync``."""

    def __init__(self, error: AssertionError) -> None:
        super().__init__(str(error))
        self.error = error


class PrefectStack:
    """A Prefect server (and the processes around it) for one test session.

    Args:
        home: The temporary ``PREFECT_HOME``.
        cwd: The folder commands run in (the repository root).
        extra_env: Variables every process gets (e.g. the fake LLM endpoint).
    """

    def __init__(self, home: Path, cwd: Path, extra_env: Mapping[str, str]) -> None:
        self.home = home
        self.cwd = cwd
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.ui_url = f"http://127.0.0.1:{self.port}"
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            **extra_env,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.api_url,
            # The UI asks the browser to call this address; its default is port 4200.
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_UI_API_URL": self.api_url,
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.commands: list[str] = []
        """Every command line run, as written in the docs (before the port is substituted)."""

    # -- command lines -----------------------------------------------------------------------

    def argv(self, command: str) -> list[str]:
        """The argument list of a docs command line, with the test server's port."""
        self.commands.append(command)
        return shlex.split(
            command.replace(f"127.0.0.1:{DEFAULT_PORT}", f"127.0.0.1:{self.port}").replace(
                f"--port {DEFAULT_PORT}", f"--port {self.port}"
            )
        )

    def run(
        self, command: str, *, env: Mapping[str, str] | None = None, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command line to its end; its output is returned (and kept on failure)."""
        result = subprocess.run(
            self.argv(command),
            cwd=cwd or self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"`{command}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def start(
        self, command: str, *, log_name: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a long-running command line in the background, its output to ``logs/LOG_NAME.log``."""
        with (self.logs / f"{log_name}.log").open("ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                self.argv(command),
                cwd=cwd or self.cwd,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._processes.append((log_name, process))
        return process

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        """Signal a background process and wait for it; SIGKILL if it does not end."""
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(_STOP_TIMEOUT)
        self._processes = [(n, p) for n, p in self._processes if p is not process]

    def log(self, log_name: str) -> str:
        """What a background process has written so far."""
        path = self.logs / f"{log_name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- the server --------------------------------------------------------------------------

    def start_server(self) -> subprocess.Popen[bytes]:
        """`prefect server start` on 127.0.0.1 and a free port; waits for ``/api/health``.

        Returns the server's process (a test may kill it).
        """
        server = self.start(f"prefect server start --host 127.0.0.1 --port {DEFAULT_PORT}", log_name="server")

        def healthy() -> bool:
            if server.poll() is not None:
                raise AssertionError(f"prefect server exited {server.returncode}:\n{self.log('server')}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(healthy, "the Prefect server's /api/health", timeout=_SERVER_START_TIMEOUT)
        return server

    def close(self) -> None:
        """Stop every background process: workers and servers first, the Prefect server last.

        A worker left without its server ignores SIGTERM for 20 s and more.
        """
        for name, process in list(reversed(self._processes)):
            if name != "server":
                self.stop(process)
        for _name, process in list(self._processes):
            self.stop(process)

    @contextmanager
    def client(self) -> Iterator[Any]:
        """A sync Prefect client bound to this server."""
        from prefect.client.orchestration import SyncPrefectClient

        with SyncPrefectClient(self.api_url) as client:
            yield client


def flow_run_id_in(output: str) -> str:
    """The flow run id `prefect deployment run` prints."""
    found = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert found, f"no flow run id in:\n{output}"
    return found.group(1)


def wait_final(stack: PrefectStack, flow_run_id: Any, timeout: float = 240.0) -> Any:
    """The flow run, once it is in a final state (Completed, Failed, Crashed, Cancelled)."""

    def final() -> Any:
        with stack.client() as client:
            run = client.read_flow_run(flow_run_id)
        return run if run.state is not None and run.state.is_final() else None

    try:
        return wait_for(final, f"flow run {flow_run_id} to finish", timeout=timeout)
    except AssertionError:
        raise AssertionError(
            f"flow run {flow_run_id} did not finish; worker log:\n{stack.log('worker')[-4000:]}"
        ) from None
