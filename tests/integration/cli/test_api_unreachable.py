"""Every command that talks to the Prefect API says, in one line, when the API does not answer.

A port nothing listens on stands for a server that is not running; a real `prefect server
start`, killed while `taskmark run` waits for an LLM, for one that dies mid-run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from support.prefect_stack import BIN, PrefectStack, free_port
from support.waiting import eventually_sync

DEADLINE_S = 120.0
"""How long a process may take to end before the test fails (a deadline, not a measurement)."""

DEFINITION = """# Two Steps

```yaml
name: unreachable
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
RUN_ID = str(uuid.UUID(int=7))
COMMANDS = {
    "run": ["run", "{path}", "-p", "topic=tides"],
    "retry": ["retry", RUN_ID],
    "runs": ["runs"],
    "trace": ["trace", RUN_ID],
    "context": ["context", "{path}", "--phase", "Polish", "-p", "topic=tides"],
    "cancel": ["cancel", RUN_ID],
    "pause": ["pause", RUN_ID],
    "resume": ["resume", RUN_ID, "--approve"],
    "deploy": ["deploy", "{path}"],
    "serve": ["serve", "{path}"],
    "watch": ["watch", "{folder}"],
}


@pytest.fixture
def definition(tmp_path: Path) -> Path:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "writer.md").write_text("You write.\n")
    path = tmp_path / "two.md"
    path.write_text(DEFINITION)
    return path


def _taskmark(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "taskmark"), *args], env=env, capture_output=True, text=True, timeout=DEADLINE_S, check=False
    )


def _dead_api(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """An API address nothing answers at, and the environment of a process told to use it."""
    url = f"http://127.0.0.1:{free_port()}/api"
    home = tmp_path / "prefect-home"
    home.mkdir()
    return url, {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(home)}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_says_in_one_line_that_the_api_did_not_answer(command: str, definition: Path, tmp_path: Path) -> None:
    url, env = _dead_api(tmp_path)
    args = [a.format(path=definition, folder=tmp_path / "watched") for a in COMMANDS[command]]

    result = _taskmark(args, env)

    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: the Prefect API at {url} did not answer: ConnectError: "), line
    assert result.stdout == ""


def test_server_status_says_so_when_prefect_api_url_does_not_answer(tmp_path: Path) -> None:
    url, env = _dead_api(tmp_path)

    result = _taskmark(["server", "status"], env)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"error: the Prefect API at {url} did not answer: ")


@pytest.mark.slow
def test_a_run_whose_server_dies_fails_in_one_line_without_dumps(
    definition: Path, tmp_path: Path, fake_llm: FakeOpenAIServer
) -> None:
    stack = PrefectStack(tmp_path / "home", definition.parent, {})
    held = threading.Event()  # Draft's call is answered once the server is dead

    def reply(request: RecordedRequest) -> Reply:
        held.wait(DEADLINE_S)
        return Reply(content="drafted")

    fake_llm.default = reply
    try:
        server = stack.start_server()
        llm = ["--model", "openai/fake-model", "--api-base", fake_llm.api_base, "--api-key", "sk-test-not-real"]
        child = subprocess.Popen(
            [str(BIN / "taskmark"), "run", str(definition), "-p", "topic=tides", *llm],
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            def calling() -> bool:
                if child.poll() is not None:
                    raise RuntimeError(f"`taskmark run` exited {child.returncode} before its first call")
                return fake_llm.in_flight >= 1

            eventually_sync(calling, timeout=DEADLINE_S, message="Draft's call to be in flight")
            stack.stop(server, signal.SIGKILL)
            held.set()  # the phase goes on, and finds its server gone
            out, err = child.communicate(timeout=DEADLINE_S)
        finally:
            held.set()
            if child.poll() is None:
                child.kill()
                child.communicate()
    finally:
        stack.close()

    assert child.returncode == 1, err
    assert "Traceback" not in out + err and "Event(" not in out + err
    prompt, started, failed = err.splitlines()
    assert prompt == f"Prefect UI: {stack.ui_url}"
    assert re.fullmatch(rf"Run [0-9a-f-]{{36}}: {re.escape(stack.ui_url)}/runs/flow-run/[0-9a-f-]{{36}}", started)
    assert failed.startswith(f"error: the Prefect API at {stack.api_url} did not answer: ")
