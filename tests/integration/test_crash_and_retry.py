"""A run whose process is killed is marked Crashed by taskmark's local server, and
`taskmark retry` finishes it without paying again for the phases that had completed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from taskmark.flows._crashes import AUTOMATION_NAME, SILENCE_S
from taskmark.flows._local_server import ensure_server, stop_server

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
    fake_llm.default = lambda r: (
        Reply(content="slow", delay_s=600) if _prompt(r).startswith("second") else Reply(content="done")
    )
    llm = ["--model", "openai/fake-model", "--api-base", fake_llm.api_base, "--api-key", "sk-test-not-real"]
    process = subprocess.Popen(
        _taskmark("run", str(path), *llm, "--json"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    api_url = env["TASKMARK_TEST_API_URL"]
    deadline = time.monotonic() + 120
    while fake_llm.count < 2:
        assert process.poll() is None and time.monotonic() < deadline, "the run did not reach its second phase"
        time.sleep(0.2)
    found = asyncio.run(_state_of(api_url, "crash-me"))
    assert found is not None and found[1] == "RUNNING"
    run_id = found[0]
    process.kill()  # SIGKILL: no chance to report anything
    process.wait(timeout=10)

    killed_at = time.monotonic()
    state = "RUNNING"
    while state == "RUNNING" and time.monotonic() - killed_at < SILENCE_S + 120:
        time.sleep(2)
        state = (asyncio.run(_state_of(api_url, "crash-me")) or ("", ""))[1]
    assert state == "CRASHED", f"still {state} {time.monotonic() - killed_at:.0f} s after the kill"

    fake_llm.reset()
    fake_llm.default = lambda r: Reply(content="done")
    retried = subprocess.run(
        _taskmark("retry", run_id, *llm, "--json"), env=env, capture_output=True, text=True, timeout=180
    )
    assert retried.returncode == 0, retried.stderr
    report = json.loads(retried.stdout)
    assert report["flow_run_id"] == run_id and report["state"] == "COMPLETED"
    assert [_prompt(r).split()[0] for r in fake_llm.requests] == ["second", "third"]  # phase One: zero repeats
