"""A local server started again (by `taskmark runs`, after `taskmark server stop`) comes back on
the port it had, so the UI address a user saw keeps working; it says when it started a server,
and when its port was taken and the address changed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # three starts of a real local server, ~10 s each

STARTED = re.compile(r"started the local Prefect server at (http://127\.0\.0\.1:(\d+)/api) \(UI: (\S+)\)")


def _taskmark(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("taskmark")), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A PREFECT_HOME of this test's own and no PREFECT_API_URL, as on a new user's machine."""
    environment = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    environment.update({"PREFECT_HOME": str(tmp_path), "PREFECT_LOGGING_LEVEL": "WARNING"})
    yield environment
    _taskmark(environment, "server", "stop")


def _api_of_status(env: dict[str, str]) -> str:
    status = _taskmark(env, "server", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    return next(line.split()[-1] for line in status.stdout.splitlines() if line.startswith("API:"))


def test_a_stopped_server_comes_back_on_its_port_unless_it_was_taken(env: dict[str, str]) -> None:
    started = _taskmark(env, "server", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    first = _api_of_status(env)
    port = int(first.rsplit(":", 1)[1].removesuffix("/api"))
    assert _taskmark(env, "server", "stop").returncode == 0

    # `taskmark runs` needs the server: it starts it again, at the address it had, and says so.
    listed = _taskmark(env, "runs")
    assert listed.returncode == 0, listed.stderr
    said = STARTED.findall(listed.stderr)
    assert said == [(first, str(port), first.removesuffix("/api"))], listed.stderr
    assert "taken" not in listed.stderr
    assert _api_of_status(env) == first

    # A server that is running is reused without a word.
    again = _taskmark(env, "runs")
    assert again.returncode == 0, again.stderr
    assert "started the local Prefect server" not in again.stderr

    # Its port taken by another program while it was stopped: another port, and the user is told.
    assert _taskmark(env, "server", "stop").returncode == 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        moved = _taskmark(env, "runs")
        assert moved.returncode == 0, moved.stderr
        said = STARTED.findall(moved.stderr)
        assert len(said) == 1 and said[0][1] != str(port), moved.stderr
        assert f"port {port}, where it listened before, is taken by another program" in moved.stderr
        assert _api_of_status(env) == said[0][0]
