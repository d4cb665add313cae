"""`taskmark run` stopped by SIGINT or SIGTERM, as `kill` or `timeout -s INT` stop it.

The run is a child process in a session of its own (no terminal), against Prefect's real
server; its first LLM call is held by the fake OpenAI server until the signal has been
handled. The run must end Cancelled, the process 128 + the signal's number, with the run's id
and the retry command printed; `taskmark retry` then finishes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from support.prefect_stack import BIN
from support.waiting import eventually_sync

pytestmark = pytest.mark.slow  # two CLI processes per test, each importing Prefect

DEADLINE_S = 120.0
"""How long a process may take to end before the test fails (a deadline, not a measurement)."""

DEFINITION = """# Two Steps

```yaml
name: NAME
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
LLM = ["--model", "openai/fake-model", "--api-key", "sk-test-not-real"]


@pytest.fixture
def project(tmp_path: Path, prefect_harness: None) -> Iterator[tuple[Path, dict[str, str]]]:
    """A definition, and the environment of a `taskmark` process on the test's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "writer.md").write_text("You write.\n")
    path = tmp_path / "two.md"
    path.write_text(DEFINITION.replace("NAME", f"signals-{uuid.uuid4().hex[:8]}"))
    yield path, {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}


def _prompt(request: RecordedRequest) -> str:
    return next(m["content"] for m in request.messages if m["role"] == "user")


async def _states(run_id: str) -> tuple[Any, list[Any]]:
    """The run's state and its phases' (subflow runs') states, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async with get_client() as client:
        run = await client.read_flow_run(uuid.UUID(run_id))
        phases = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
        )
    return run.state, [p.state for p in phases]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_cancelled_and_retry_finishes_it(
    project: tuple[Path, dict[str, str]], fake_llm: FakeOpenAIServer, sig: signal.Signals, code: int
) -> None:
    path, env = project
    held = threading.Event()  # Draft's call is answered only after the test is over

    def reply(request: RecordedRequest) -> Reply:
        held.wait(DEADLINE_S)
        return Reply(content="too late")

    fake_llm.default = reply
    child = subprocess.Popen(
        [str(BIN / "taskmark"), "run", str(path), "-p", "topic=tides", "--api-base", fake_llm.api_base, *LLM],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # no terminal, as under setsid or timeout
    )
    try:

        def calling() -> bool:
            if child.poll() is not None:  # not an AssertionError: that would mean "not yet"
                raise RuntimeError(f"`taskmark run` exited {child.returncode} before its first call")
            return fake_llm.in_flight >= 1

        eventually_sync(calling, timeout=DEADLINE_S, message="Draft's call to be in flight")
        child.send_signal(sig)
        out, err = child.communicate(timeout=DEADLINE_S)
    finally:
        held.set()
        if child.poll() is None:
            child.kill()
            child.communicate()

    assert child.returncode == code, err
    assert "Traceback" not in out + err
    started = re.search(r"^Run ([0-9a-f-]{36}): http://\S+/runs/flow-run/\1$", err, re.MULTILINE)
    assert started, err
    run_id = started.group(1)
    assert f"stopped by {sig.name}: run {run_id} cancelled\n" in err
    assert f"run it again, reusing the answers it has: taskmark retry {run_id}\n" in err
    state, phases = asyncio.run(_states(run_id))
    assert state.is_cancelled() and state.message.startswith(f"Stopped: interrupted by {sig.name}")
    assert len(phases) == 2 and all(p.is_cancelled() for p in phases)  # neither Crashed nor TimedOut
    assert fake_llm.count == 1  # nothing was called after the signal

    fake_llm.reset()
    fake_llm.default = lambda r: Reply(content="polished" if _prompt(r).startswith("Polish") else "drafted")
    retried = subprocess.run(
        [str(BIN / "taskmark"), "retry", run_id, "--api-base", fake_llm.api_base, *LLM, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert retried.returncode == 0, retried.stderr
    report = json.loads(retried.stdout)
    assert (report["flow_run_id"], report["state"]) == (run_id, "COMPLETED")
    assert [_prompt(r).split()[0] for r in fake_llm.requests] == ["Draft", "Polish"]


def test_ctrl_c_on_a_terminal_stops_the_run_with_the_same_hint(
    project: tuple[Path, dict[str, str]], fake_llm: FakeOpenAIServer
) -> None:
    path, env = project
    held = threading.Event()

    def reply(request: RecordedRequest) -> Reply:
        held.wait(DEADLINE_S)
        return Reply(content="too late")

    fake_llm.default = reply
    argv = [str(BIN / "taskmark"), "run", str(path), "-p", "topic=tides", "--api-base", fake_llm.api_base, *LLM]
    # `pty.spawn` gives `taskmark` a terminal of its own (the live table is drawn) and copies
    # what we write into it: a typed Ctrl-C becomes SIGINT, as at a keyboard. It forks in a
    # process of its own, not in this one, which has threads.
    spawn = "import os, pty, sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))"
    output: list[bytes] = []
    with subprocess.Popen(
        [sys.executable, "-c", spawn, *argv], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        stdout = child.stdout
        reader = threading.Thread(target=lambda: output.extend(iter(stdout.read1, b"")), daemon=True)
        reader.start()
        try:

            def calling() -> bool:
                if child.poll() is not None:
                    raise RuntimeError(f"`taskmark run` exited {child.returncode} before its first call")
                return fake_llm.in_flight >= 1

            eventually_sync(calling, timeout=DEADLINE_S, message="Draft's call to be in flight")
            child.stdin.write(b"\x03")
            child.stdin.flush()
            child.wait(DEADLINE_S)
            reader.join(DEADLINE_S)
        finally:
            held.set()
            if child.poll() is None:
                child.kill()

    text = b"".join(output).decode(errors="replace")
    assert child.returncode == 130, text
    assert "Traceback" not in text
    [run_id] = set(re.findall(r"Run ([0-9a-f-]{36}): http://", text))
    assert f"stopped by SIGINT: run {run_id} cancelled" in text
    assert f"run it again, reusing the answers it has: taskmark retry {run_id}" in text
    state, _ = asyncio.run(_states(run_id))
    assert state.is_cancelled()
