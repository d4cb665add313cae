"""A run whose process is killed is marked Crashed by taskmark's local server, and
`taskmark retry` finishes it without paying again for the phases that had completed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from support.waiting import eventually_sync
from taskmark.runs._read import aread_run
from taskmark.runs.record import RunRecord
from taskmark.server._crashes import AUTOMATION_NAME, SILENCE_S
from taskmark.server._local import ensure_server, stop_server

pytestmark = pytest.mark.slow  # a real local server, and a crash noticed after SILENCE_S of silence

CHAIN = """# Crash

```yaml
name: crash-me
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


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """taskmark's own local server in a PREFECT_HOME of this module's, as `taskmark run` starts it."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    home = tmp_path_factory.mktemp("crash-home")
    with temporary_settings(
        updates={PREFECT_HOME: str(home)}, restore_defaults={PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL}
    ):
        api_url = ensure_server()
        environment = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        yield {**environment, "PREFECT_HOME": str(home), "TASKMARK_TEST_API_URL": api_url}
        stop_server()


def _prompt(request: RecordedRequest) -> str:
    return next(m["content"] for m in request.messages if m["role"] == "user")


def _taskmark(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("taskmark")), *args]


async def _state_of(api_url: str, name: str) -> tuple[str, str] | None:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async with PrefectClient(api_url) as client:
        runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])))
        automations = await client.read_automations_by_name(AUTOMATION_NAME)
    assert automations, "the local server has no crash automation"
    return (str(runs[0].id), runs[0].state.type.value if runs[0].state else "") if runs else None


def test_killed_run_is_crashed_then_retried_without_repeats(
    env: dict[str, str], fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    path = tmp_path / "crash.md"
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
    process = subprocess.Popen(
        _taskmark("run", str(path), *llm, "--json"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    api_url = env["TASKMARK_TEST_API_URL"]

    def second_phase_called() -> bool:
        if process.poll() is not None:  # not an AssertionError: that would mean "not yet"
            raise RuntimeError(f"`taskmark run` exited {process.returncode} before its second phase")
        return fake_llm.count >= 2

    eventually_sync(second_phase_called, interval=0.2, message="the run to reach its second phase")
    found = asyncio.run(_state_of(api_url, "crash-me"))
    assert found is not None and found[1] == "RUNNING"
    run_id = found[0]
    process.kill()  # SIGKILL: no chance to report anything
    process.wait(timeout=10)
    held.set()  # nobody is listening any more

    def crashed() -> bool:
        state = (asyncio.run(_state_of(api_url, "crash-me")) or ("", ""))[1]
        if state not in ("RUNNING", "CRASHED"):
            raise RuntimeError(f"the killed run went {state}, not Crashed")
        return state == "CRASHED"

    # The server marks it Crashed once it has been silent for SILENCE_S; the rest is slack.
    eventually_sync(crashed, timeout=SILENCE_S + 120, interval=2, message="the killed run to be marked Crashed")
    record = asyncio.run(_record(api_url, run_id))
    assert record.outcome == "crashed"
    assert [(p.name, p.state) for p in record.phases] == [
        ("One", "completed"),
        ("Two", "crashed"),
        ("Three", "not_run"),
    ]

    fake_llm.reset()
    fake_llm.default = lambda r: Reply(content="done")
    retried = subprocess.run(
        _taskmark("retry", run_id, *llm, "--json"), env=env, capture_output=True, text=True, timeout=180
    )
    assert retried.returncode == 0, retried.stderr
    report = json.loads(retried.stdout)
    assert report["flow_run_id"] == run_id and report["state"] == "COMPLETED"
    assert [_prompt(r).split()[0] for r in fake_llm.requests] == ["second", "third"]  # phase One: zero repeats
    record = asyncio.run(_record(api_url, run_id))
    assert record.outcome == "completed" and record.attempts == 2
    assert [(p.name, p.state) for p in record.phases] == [(n, "completed") for n in ("One", "Two", "Three")]
    assert record.phases[0].calls()[0].cached  # the first attempt's answer
    # Answered requests: One's before the kill, Two's and Three's after (Two's first request
    # was answered to a dead process: nobody could count it).
    assert record.totals.calls == 3 and record.totals.cached_calls == 1
    traced = subprocess.run(_taskmark("trace", run_id, "--json"), env=env, capture_output=True, text=True, timeout=120)
    assert traced.returncode == 0, traced.stderr
    assert json.loads(traced.stdout) == json.loads(record.model_dump_json())  # `trace --json` is the record


async def _record(api_url: str, run_id: str) -> RunRecord:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api_url) as client:
        return await aread_run(run_id, client=client)
