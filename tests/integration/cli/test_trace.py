"""`taskmark runs` and `taskmark trace`, read back from Prefect's real server after real runs.

Runs go through `taskmark run` (in this process, or in a child process that is killed) against
the fake OpenAI-compatible server, which counts every request; the traces are then read back
from the API by the commands, as a user would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from support.fake_openai import FakeOpenAIServer, Reply
from support.prefect_stack import BIN, wait_for
from taskmark.cli import app

runner = CliRunner()
KEY = f"sk-canary-{uuid.uuid4().hex}"
DEFINITION = """# Two Steps

```yaml
name: NAME
retry: {maxAttempts: 3, backoffMs: 10}
requirements:
  topic: string
```

## Phase: Draft

### Steps
- agent: writer - Draft on {{ topic }}

## Phase: Polish
dependsOn: Draft

### Steps
- agent: writer - Polish {{ phases["Draft"] }}
"""
STAGES = ["ingestion", "promptTemplating", "inference", "parsing", "integration"]
"""The stages a phase with one agent step and no outputs runs; the others are skipped."""


@pytest.fixture
def project(
    tmp_path: Path, fake_llm: FakeOpenAIServer, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A definition with a name of its own (the server is shared by the session's tests)."""
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "writer.md").write_text("You write.\n")
    path = tmp_path / "two.md"
    path.write_text(DEFINITION.replace("NAME", f"trace-{uuid.uuid4().hex[:8]}"))
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    monkeypatch.setenv("TASKMARK_LLM_API_BASE", fake_llm.api_base)
    monkeypatch.setenv("TASKMARK_LLM_MODEL", "openai/fake-model")
    monkeypatch.setenv("TASKMARK_LLM_API_KEY", KEY)
    yield path


def name_of(project: Path) -> str:
    return next(line.split(": ", 1)[1] for line in project.read_text().splitlines() if line.startswith("name: "))


def run_once(project: Path, *, exit_code: int = 0) -> str:
    """Run the definition with `taskmark run --json`; its flow run id."""
    result = runner.invoke(app, ["run", str(project), "-p", "topic=tides", "--json"])
    assert result.exit_code == exit_code, result.output
    return str(json.loads(result.stdout)["flow_run_id"])


def trace_json(run_id: str) -> dict[str, Any]:
    result = runner.invoke(app, ["trace", run_id, "--json"])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_trace_after_a_retried_fault_shows_every_stage_the_retry_and_the_requests(
    project: Path, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.push(Reply(status=429, headers={"Retry-After": "0"}, error_message="slow down"))
    run_id = run_once(project)

    trace = trace_json(run_id)

    assert trace["complete"] is True
    assert (trace["id"], trace["definition"], trace["state"]) == (run_id, name_of(project), "COMPLETED")
    assert [p["name"] for p in trace["phases"]] == ["Draft", "Polish"]
    for phase in trace["phases"]:
        assert phase["state"] == "COMPLETED"
        assert [s["name"] for s in phase["stages"]] == STAGES
        assert all(s["state"] == "COMPLETED" and s["duration_s"] is not None for s in phase["stages"])
    draft_call, polish_call = (p["stages"][2]["calls"] for p in trace["phases"])
    assert [(c["agent"], c["attempts"], c["retries"], c["model"]) for c in draft_call] == [
        ("writer", 2, 1, "openai/fake-model")
    ]
    assert [(c["agent"], c["attempts"], c["retries"]) for c in polish_call] == [("writer", 1, 0)]
    assert draft_call[0]["total_tokens"] == 18 and draft_call[0]["prompt_tokens"] == 11
    totals = trace["totals"]
    assert totals["attempts"] == fake_llm.count == 3
    assert (totals["calls"], totals["failed_calls"], totals["retries"], totals["total_tokens"]) == (2, 0, 1, 36)
    assert trace["artifacts"] == sorted(
        [f"{name_of(project)}-summary", f"{name_of(project)}-usage", f"outputs-{name_of(project)}"]
    )

    text = runner.invoke(app, ["trace", run_id])
    assert text.exit_code == 0, text.output
    assert "2 calls · 3 requests (1 retry) · 36 tokens" in text.stdout
    assert "writer — completed" in text.stdout and "2 attempts (1 retry)" in text.stdout
    assert all(stage in text.stdout for stage in STAGES)


def test_trace_of_a_failed_run_names_the_phase_stage_and_reason_without_secrets(
    project: Path, fake_llm: FakeOpenAIServer
) -> None:
    # The server echoes the key in its error, as some providers do; Polish's call fails after its retries.
    fake_llm.default = lambda r: (
        Reply(status=503, error_message=f"overloaded for {KEY}")
        if "Polish" in r.messages[-1]["content"]
        else Reply(content="drafted")
    )
    run_id = run_once(project, exit_code=1)

    trace = trace_json(run_id)
    text = runner.invoke(app, ["trace", run_id])

    assert trace["complete"] is True and trace["state"] == "FAILED"
    draft, polish = trace["phases"]
    assert draft["state"] == "COMPLETED" and polish["state"] == "FAILED"
    assert "phase 'Polish' failed in inference" in polish["message"]
    assert [s["name"] for s in polish["stages"]] == ["ingestion", "promptTemplating", "inference"]
    inference = polish["stages"][2]
    assert inference["state"] == "FAILED" and "phase 'Polish' failed in inference" in inference["message"]
    [call] = inference["calls"]
    assert (call["state"], call["status_code"], call["attempts"], call["retries"]) == ("FAILED", 503, 3, 2)
    assert "overloaded for" in call["error"] and "gave up after 3 attempts" in call["error"]
    totals = trace["totals"]
    assert (totals["calls"], totals["failed_calls"], totals["attempts"]) == (1, 1, fake_llm.count) == (1, 1, 4)
    assert text.exit_code == 0 and "phase 'Polish' failed in inference" in text.stdout
    assert "Traceback" not in text.output
    for output in (json.dumps(trace), text.output):
        assert KEY not in output and KEY[3:] not in output


def _kill_mid_phase(project: Path, fake_llm: FakeOpenAIServer) -> str:
    """Start `taskmark run` in a child process, SIGKILL it while Draft's call waits; the run id."""
    fake_llm.default = lambda _r: Reply(content="late", delay_s=60)
    child = subprocess.Popen(
        [str(BIN / "taskmark"), "run", str(project), "-p", "topic=tides"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: fake_llm.count >= 1, "the child's first LLM request")
        listed = runner.invoke(app, ["runs", "--definition", name_of(project), "--json"])
        [run] = json.loads(listed.stdout)
        assert run["state"] == "RUNNING"

        def draft_calling() -> bool:
            phases = trace_json(run["id"])["phases"]  # both subflow runs are created at the start
            return len(phases) == 2 and phases[0]["state"] == "RUNNING" and any(s["calls"] for s in phases[0]["stages"])

        wait_for(draft_calling, "the run's records of the call in flight")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return str(run["id"])


@pytest.mark.parametrize("final", ["Crashed", "Cancelled"])
def test_trace_of_a_run_that_ended_abruptly_shows_where_it_stopped(
    project: Path, fake_llm: FakeOpenAIServer, final: str
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Crashed

    run_id = _kill_mid_phase(project, fake_llm)

    async def end() -> None:
        # What Prefect's server does for a run whose process died (or an operator's cancel).
        state = (
            Crashed(message="the process was killed")
            if final == "Crashed"
            else Cancelled(message="cancelled by an operator")
        )
        async with get_client() as client:
            await client.set_flow_run_state(uuid.UUID(run_id), state, force=True)

    asyncio.run(end())
    trace = trace_json(run_id)

    kind = final.upper()
    assert trace["state"] == kind and trace["complete"] is True
    draft, polish = trace["phases"]
    assert (draft["state"], draft["recorded_state"]) == (kind, "RUNNING")
    assert f"the run ended {final.lower()} while this was running" == draft["message"]
    inference = next(s for s in draft["stages"] if s["name"] == "inference")
    assert inference["task_run_id"] is None and inference["state"] == kind  # its record comes at its end
    [call] = inference["calls"]
    assert (call["agent"], call["state"], call["recorded_state"]) == ("writer", kind, "RUNNING")
    assert polish["state"] == kind and polish["stages"] == [] and polish["start"] is None
    assert trace["totals"]["attempts"] == 0 and fake_llm.count == 1  # the request never came back


@pytest.mark.slow
def test_runs_filters_by_definition_and_state_newest_first_within_limit(
    project: Path, fake_llm: FakeOpenAIServer
) -> None:
    ok_1 = run_once(project)
    fake_llm.default = lambda _r: Reply(status=400, error_message="bad prompt")
    failed = run_once(project, exit_code=1)
    fake_llm.default = lambda _r: Reply(content="fine")
    ok_2 = run_once(project)
    name = name_of(project)

    def ids(*args: str) -> list[str]:
        result = runner.invoke(app, ["runs", "--definition", name, *args, "--json"])
        assert result.exit_code == 0, result.output
        return [r["id"] for r in json.loads(result.stdout)]

    assert ids() == [ok_2, failed, ok_1]
    assert ids("--limit", "2") == [ok_2, failed]
    assert ids("--state", "failed") == [failed]
    assert ids("--state", "COMPLETED", "--state", "FAILED", "-n", "1") == [ok_2]
    assert ids("--state", "CRASHED") == []

    [latest] = json.loads(runner.invoke(app, ["runs", "-d", name, "-n", "1", "--json"]).stdout)
    assert set(latest) == {
        "id",
        "name",
        "definition",
        "state",
        "state_name",
        "start",
        "duration_s",
        "calls",
        "failed_calls",
        "cost_usd",
        "usage_from",
    }
    assert (latest["definition"], latest["state"], latest["calls"], latest["failed_calls"], latest["usage_from"]) == (
        name,
        "COMPLETED",
        2,
        0,
        "artifact",
    )
    assert latest["duration_s"] > 0 and latest["cost_usd"] == 0.0
    [bad] = json.loads(runner.invoke(app, ["runs", "-d", name, "-s", "FAILED", "--json"]).stdout)
    assert (bad["calls"], bad["failed_calls"]) == (0, 1)

    table = runner.invoke(app, ["runs", "--definition", name])
    assert table.exit_code == 0
    assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == [ok_2, failed, ok_1]
    assert "completed" in table.stdout and "failed" in table.stdout and "(1 failed)" in table.stdout


def test_runs_rejects_an_unknown_state(project: Path) -> None:
    result = runner.invoke(app, ["runs", "--state", "FINISHED"])
    assert result.exit_code == 2
    assert "unknown state 'FINISHED'" in result.output


@pytest.mark.parametrize(("run_id", "message"), [(str(uuid.UUID(int=7)), "no such run"), ("not-a-run", "not a run id")])
def test_trace_of_an_unknown_run_exits_2(project: Path, run_id: str, message: str) -> None:
    result = runner.invoke(app, ["trace", run_id])
    assert result.exit_code == 2
    assert f"error: {run_id}: {message}" in result.stderr
    assert "Traceback" not in result.output


def test_trace_of_a_phase_subflow_id_shows_its_run(project: Path) -> None:
    run_id = run_once(project)
    phase_id = trace_json(run_id)["phases"][1]["flow_run_id"]
    assert trace_json(phase_id)["id"] == run_id


def test_trace_of_a_retried_run_shows_each_attempt(project: Path, fake_llm: FakeOpenAIServer) -> None:
    from taskmark.flows._run import aretry

    fake_llm.default = lambda r: (
        Reply(status=400, error_message="bad") if "Polish" in r.messages[-1]["content"] else Reply(content="drafted")
    )
    run_id = run_once(project, exit_code=1)
    fake_llm.default = lambda _r: Reply(content="polished")
    retried = asyncio.run(aretry(run_id))
    assert retried is not None and retried.state == "COMPLETED"

    trace = trace_json(run_id)

    assert (trace["state"], trace["attempt"], trace["complete"]) == ("COMPLETED", 2, True)
    [first] = trace["earlier_attempts"]
    assert (first["number"], first["state"]) == (1, "FAILED")
    assert [(p["name"], p["state"]) for p in first["phases"]] == [("Draft", "COMPLETED"), ("Polish", "FAILED")]
    assert [(p["name"], p["state"]) for p in trace["phases"]] == [("Draft", "COMPLETED"), ("Polish", "COMPLETED")]
    assert trace["totals"]["attempts"] == fake_llm.count == 3
    assert (trace["totals"]["calls"], trace["totals"]["failed_calls"]) == (2, 1)
