"""taskmark's local Prefect server, as real processes: start, reuse, run flows, stop.

Each start costs ~10 s, so one server (started by two processes at once) serves the
tests that only use it. Tests that stop a server or rewrite its state file work in a
PREFECT_HOME of their own (``own_home``), so no test depends on running before or after
another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from support.waiting import eventually_sync
from taskmark.cli.server import app
from taskmark.server._local import (
    LOG_FILE,
    STATE_FILE,
    ensure_server,
    server_status,
    stop_server,
)

pytestmark = pytest.mark.slow  # real server processes, ~10 s to start each

runner = CliRunner()

# Starts with ensure_server and prints what it got; two of these run at once.
_ENSURE = """
import json
from taskmark.server._local import ensure_server, server_status
url = ensure_server()
print(json.dumps({"api_url": url, "pid": server_status().pid}))
"""

# A flow with four async subflows gathered at once, sent to the server by connect();
# counts every HTTP status the client receives, so a 503 (a SQLite lock failure turned
# into a retry) cannot hide. Each child's task waits until all four are running, so the
# children overlap however slow the machine is (a broken barrier fails the run).
_FLOW = """
import asyncio, collections, json, threading
import httpx

statuses = collections.Counter()
_send = httpx.AsyncClient.send

async def send(self, request, *args, **kwargs):
    response = await _send(self, request, *args, **kwargs)
    statuses[response.status_code] += 1
    return response

httpx.AsyncClient.send = send

from prefect import flow, task
from taskmark.server._local import connect

# After Prefect is imported, as in `taskmark run`: connect() must still take effect.
api_url = connect()

all_running = threading.Barrier(4)

@task
async def work(i: int) -> int:
    await asyncio.to_thread(all_running.wait, 120)
    return i

@flow
async def child(i: int) -> int:
    return await work(i)

@flow
async def parent() -> list[int]:
    return list(await asyncio.gather(*[child(i) for i in range(4)]))

state = asyncio.run(parent(return_state=True))
print(json.dumps({
    "api_url": api_url,
    "flow_run_id": str(state.state_details.flow_run_id),
    "state": state.type.value,
    "result": state.result(),
    "statuses": {str(code): n for code, n in statuses.items()},
}))
"""


def _python(code: str, env: dict[str, str], timeout: float = 120) -> Any:
    """Run ``code`` in a new interpreter; the JSON it printed last."""
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A PREFECT_HOME of this module's own, seen by this process and its children."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    path = tmp_path_factory.mktemp("prefect-home")
    # A Prefect test harness left running by another module sets the API URL and its own
    # database; this module's server must use neither.
    harness = {PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL}
    with temporary_settings(updates={PREFECT_HOME: str(path)}, restore_defaults=harness):
        yield path
        stop_server()


@pytest.fixture
def own_home(home: Path, tmp_path: Path) -> Iterator[Path]:
    """A PREFECT_HOME of this test's own: for tests that stop a server or rewrite its state
    file, which would pull the module's shared server from under the other tests."""
    from prefect.settings import PREFECT_HOME, temporary_settings

    path = tmp_path / "prefect-home"
    path.mkdir()
    with temporary_settings(updates={PREFECT_HOME: str(path)}):
        try:
            yield path
        finally:
            stop_server()


@pytest.fixture(scope="module")
def env(home: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**environment, "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "WARNING"}


@pytest.fixture(scope="module")
def started(env: dict[str, str]) -> list[dict[str, Any]]:
    """What two processes calling ensure_server at the same moment each got."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _ENSURE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=False):
        assert process.returncode == 0, err
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_two_processes_starting_at_once_end_with_one_server(started: list[dict[str, Any]], home: Path) -> None:
    first, second = started
    assert first == second
    assert first["api_url"].startswith("http://127.0.0.1:") and first["api_url"].endswith("/api")
    state = json.loads((home / STATE_FILE).read_text())
    assert (state["pid"], state["api_url"]) == (first["pid"], first["api_url"])
    assert set(state) == {"pid", "port", "api_url", "started_at"}


def test_status_reports_the_running_server(started: list[dict[str, Any]], home: Path) -> None:
    status = server_status()
    assert status.running
    assert (status.pid, status.api_url) == (started[0]["pid"], started[0]["api_url"])
    assert status.ui_url == started[0]["api_url"].removesuffix("/api")
    assert status.database_url == f"sqlite+aiosqlite:///{home}/prefect.db"
    assert status.log_path == home / LOG_FILE and status.log_path.exists()

    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert f"UI:       {status.ui_url}" in result.output
    assert str(status.log_path) in result.output


def test_later_calls_reuse_the_server(started: list[dict[str, Any]]) -> None:
    assert ensure_server() == started[0]["api_url"]
    assert server_status().pid == started[0]["pid"]

    result = runner.invoke(app, ["start"])
    assert result.exit_code == 0, result.output
    assert "already running" in result.output
    assert f"UI:       {started[0]['api_url'].removesuffix('/api')}" in result.output


def test_prefect_api_url_wins_and_starts_nothing(started: list[dict[str, Any]]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert ensure_server() == "http://127.0.0.1:9/api"
    assert server_status().pid == started[0]["pid"]


def test_the_ui_is_served_and_calls_this_api(started: list[dict[str, Any]]) -> None:
    api_url = started[0]["api_url"]
    base = api_url.removesuffix("/api")
    with httpx.Client(follow_redirects=True, timeout=10) as client:
        assert client.get(f"{base}/ui-settings").json()["api_url"] == api_url
        page = client.get(base + "/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "<html" in page.text


def test_connect_then_concurrent_subflows_complete_without_503(
    started: list[dict[str, Any]], env: dict[str, str]
) -> None:
    api_url = started[0]["api_url"]
    run = _python(_FLOW, env)
    assert run["api_url"] == api_url

    assert (run["state"], run["result"]) == ("COMPLETED", [0, 1, 2, 3])
    assert "503" not in run["statuses"], run["statuses"]
    assert not any(code.startswith("5") for code in run["statuses"]), run["statuses"]

    # Recorded on this server: the parent and its four children, which overlapped in time.
    with httpx.Client(base_url=api_url, timeout=10) as client:
        parent = client.get(f"/flow_runs/{run['flow_run_id']}").json()
        assert parent["state_type"] == "COMPLETED"
        children = client.post(
            "/flow_runs/filter",
            json={"flow_runs": {"parent_flow_run_id": {"any_": [run["flow_run_id"]]}}},
        ).json()
    assert len(children) == 4 and {c["state_type"] for c in children} == {"COMPLETED"}
    assert max(c["start_time"] for c in children) < min(c["end_time"] for c in children)


def test_stop_stops_it(own_home: Path) -> None:
    ensure_server()
    pid = server_status().pid
    assert pid is not None

    result = runner.invoke(app, ["stop"])
    assert result.exit_code == 0, result.output
    assert result.output == "Stopped the local Prefect server.\n"
    eventually_sync(lambda: _gone(pid), timeout=10, interval=0.05, message=f"server process {pid} to exit")
    assert json.loads((own_home / STATE_FILE).read_text())["pid"] is None  # its port is kept for the next start

    status = runner.invoke(app, ["status"])
    assert status.exit_code == 1
    assert "not running" in status.output and "Traceback" not in status.output
    assert runner.invoke(app, ["stop"]).output == "The local Prefect server is not running.\n"


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited: gone, or a zombie that init has yet to reap."""
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except (ProcessLookupError, FileNotFoundError):
        return True


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_state_file_naming_another_process_is_ignored_and_never_signalled(own_home: Path) -> None:
    # Our own pid: alive, but not a taskmark server (pids are reused).
    (own_home / STATE_FILE).write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "port": 9,
                "api_url": "http://127.0.0.1:9/api",
                "started_at": "2026-01-01T00:00:00+00:00",
            }
        )
    )
    assert not server_status().running
    assert stop_server() is False
    assert json.loads((own_home / STATE_FILE).read_text())["pid"] is None


def test_a_stale_state_file_is_replaced(own_home: Path) -> None:
    stale = {
        "pid": _dead_pid(),
        "port": 9,
        "api_url": "http://127.0.0.1:9/api",
        "started_at": "2026-01-01T00:00:00+00:00",
    }
    (own_home / STATE_FILE).write_text(json.dumps(stale))
    (own_home / LOG_FILE).write_text("the stale server's log\n")
    assert server_status().running is False and server_status().pid is None

    api_url = ensure_server()
    status = server_status()
    assert status.running and status.api_url == api_url
    assert json.loads((own_home / STATE_FILE).read_text())["pid"] == status.pid != stale["pid"]
    assert (own_home / (LOG_FILE + ".1")).read_text() == "the stale server's log\n"  # the previous log is kept

    assert stop_server() is True
    assert not server_status().running


def test_a_server_that_cannot_start_names_its_log(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME, temporary_settings

    # The database's folder does not exist: migrations fail and the process exits.
    bad = f"sqlite+aiosqlite:///{tmp_path}/missing/prefect.db"
    with temporary_settings(updates={PREFECT_HOME: str(tmp_path), PREFECT_API_DATABASE_CONNECTION_URL: bad}):
        result = runner.invoke(app, ["start", "--timeout", "60"])
        assert not server_status().running
    assert result.exit_code == 1
    assert f"Error: the local Prefect server exited; see {tmp_path / LOG_FILE}:\n" in result.output
    assert "unable to open database file" in result.output  # the log's last lines say why
    assert not (tmp_path / STATE_FILE).exists()


def test_status_hides_the_database_password(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME, temporary_settings

    url = "postgresql+asyncpg://prefect:s3cret@127.0.0.1:5432/prefect"
    with temporary_settings(updates={PREFECT_HOME: str(tmp_path), PREFECT_API_DATABASE_CONNECTION_URL: url}):
        status = server_status()
    assert status.database_url == "postgresql+asyncpg://prefect:***@127.0.0.1:5432/prefect"
    assert not status.running
