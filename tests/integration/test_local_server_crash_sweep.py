"""A run whose process died while the local server was down is marked Crashed once the server
is back, whatever the downtime, and `taskmark retry` then finishes it, reusing the answers it
had.

Prefect's crash automation cannot see such a run: it counts silence from a heartbeat the
running server received, and a window that closed while the server was down is dropped (after
~150 s of downtime in the wild). Here the automation is deleted instead of waiting that long,
so only the server's own sweep can mark the run Crashed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from support.waiting import eventually_sync
from taskmark.server._crashes import AUTOMATION_NAME

pytestmark = pytest.mark.slow  # two starts of a real local server, and the sweep's wait

TIMEOUT_S = 10
"""The heartbeat timeout of the restarted server (Prefect's floor): its sweep runs this long after it starts."""

CHAIN = """# Swept

```yaml
name: swept
```

## Phase: One

### Steps
- agent: a - first

## Phase: Two
dependsOn: [One]

### Steps
- agent: a - second after {{ phases["One"] }}

## Phase: Three
dependsOn: [Two]

### Steps
- agent: a - third after {{ phases["Two"] }}
"""


def _taskmark(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("taskmark")), *args]


def _prompt(request: RecordedRequest) -> str:
    return next(m["content"] for m in request.messages if m["role"] == "user")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A PREFECT_HOME of this test's own and no PREFECT_API_URL: taskmark's local server."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    environment = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "TASKMARK_HEARTBEAT_TIMEOUT_S")}
    environment["PREFECT_HOME"] = str(home)
    yield environment
    subprocess.run(_taskmark("server", "stop"), env=environment, capture_output=True, timeout=60)


def _api_url(env: dict[str, str]) -> str:
    status = subprocess.run(_taskmark("server", "status"), env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    return next(line.split()[-1] for line in status.stdout.splitlines() if line.startswith("API:"))


async def _flow_run(api_url: str, name: str) -> Any:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async with PrefectClient(api_url) as client:
        runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])))
    return runs[0] if runs else None


async def _delete_crash_automation(api_url: str) -> None:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api_url) as client:
        automations = await client.read_automations_by_name(AUTOMATION_NAME)
        assert automations, "the local server has no crash automation"
        for automation in automations:
            await client.delete_automation(automation.id)


def test_a_run_killed_while_the_server_was_down_is_crashed_then_retried(
    env: dict[str, str], fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    path = tmp_path / "swept.md"
    path.write_text(CHAIN)
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "a.md").write_text("You answer.\n")
    held = threading.Event()  # phase Two's call is answered only once its process is dead

    def reply(request: RecordedRequest) -> Reply:
        if _prompt(request).startswith("second"):
            held.wait(600)
            return Reply(content="too late")
        return Reply(content="done")

    fake_llm.default = reply
    llm = ["--model", "openai/fake-model", "--api-base", fake_llm.api_base, "--api-key", "sk-test-not-real"]
    started = subprocess.run(_taskmark("server", "start"), env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    api_url = _api_url(env)
    process = subprocess.Popen(
        _taskmark("run", str(path), *llm, "--json"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def second_phase_called() -> bool:
            if process.poll() is not None:  # not an AssertionError: that would mean "not yet"
                raise RuntimeError(f"`taskmark run` exited {process.returncode} before its second phase")
            return fake_llm.count >= 2

        eventually_sync(second_phase_called, interval=0.2, message="the run to reach its second phase")
        run = asyncio.run(_flow_run(api_url, "swept"))
        assert run is not None and run.state.type.value == "RUNNING"
        # The automation's window for this run is gone, as after a long downtime.
        asyncio.run(_delete_crash_automation(api_url))

        # The server goes down; the run's process dies while nobody is listening.
        stopped = subprocess.run(_taskmark("server", "stop"), env=env, capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    finally:
        process.kill()  # SIGKILL: no chance to report anything
        process.wait(timeout=10)
        held.set()

    # `taskmark runs` brings the server back, with a short heartbeat timeout.
    restarted_env = {**env, "TASKMARK_HEARTBEAT_TIMEOUT_S": str(TIMEOUT_S)}
    listed = subprocess.run(_taskmark("runs", "--json"), env=restarted_env, capture_output=True, text=True, timeout=180)
    assert listed.returncode == 0, listed.stderr
    assert _api_url(env) == api_url  # the same port, too
    # The automation the new server set up starts from nothing: it has no window for this run.
    asyncio.run(_delete_crash_automation(api_url))

    def crashed() -> Any:
        current = asyncio.run(_flow_run(api_url, "swept"))
        state = current.state.type.value
        if state not in ("RUNNING", "CRASHED"):
            raise RuntimeError(f"the dead run went {state}, not Crashed")
        return current if state == "CRASHED" else None

    # The sweep runs TIMEOUT_S after the server starts; the rest is slack for a loaded machine.
    swept = eventually_sync(crashed, timeout=TIMEOUT_S + 120, interval=1, message="the dead run to be marked Crashed")
    assert "since the local Prefect server started" in swept.state.message

    listed = subprocess.run(_taskmark("runs", "--json"), env=env, capture_output=True, text=True, timeout=180)
    assert listed.returncode == 0, listed.stderr
    assert [(r["id"], r["state"]) for r in json.loads(listed.stdout)] == [(str(run.id), "CRASHED")]

    fake_llm.reset()
    fake_llm.default = lambda r: Reply(content="done")
    retried = subprocess.run(
        _taskmark("retry", str(run.id), *llm, "--json"), env=env, capture_output=True, text=True, timeout=300
    )
    assert retried.returncode == 0, retried.stderr
    report = json.loads(retried.stdout)
    assert report["flow_run_id"] == str(run.id) and report["state"] == "COMPLETED"
    assert [_prompt(r).split()[0] for r in fake_llm.requests] == ["second", "third"]  # phase One: reused
