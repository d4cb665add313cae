"""The Python API runs on the same local server as the CLI, never on Prefect's ephemeral one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.fake_openai import FakeOpenAIServer, Reply

pytestmark = pytest.mark.slow  # a real local server, ~10 s to start

DEFINITION = """# Python API

```yaml
name: python-api
requirements:
  topic: string
```

## Phase: Draft

### Steps
- agent: writer - Draft on {{ topic }}
"""

# What a user writes: no PREFECT_API_URL anywhere; `run` first, then `arun` in an event loop.
_SCRIPT = """
import asyncio, json, sys
import taskmark

first = taskmark.run(sys.argv[1], topic="tides")
second = asyncio.run(taskmark.arun(sys.argv[1], {"topic": "waves"}))
print(json.dumps([[first.flow_run_id, first.state], [second.flow_run_id, second.state]]))
"""


def _taskmark(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("taskmark")), *args]


@pytest.fixture
def env(tmp_path: Path, fake_llm: FakeOpenAIServer) -> Iterator[dict[str, str]]:
    """A PREFECT_HOME of this test's own, no PREFECT_API_URL, and Prefect's ephemeral mode off:
    a flow that fell back to an ephemeral server would fail instead of starting one."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    environment = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    environment.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "TASKMARK_LLM_MODEL": "openai/fake-model",
            "TASKMARK_LLM_API_BASE": fake_llm.api_base,
            "TASKMARK_LLM_API_KEY": "sk-test-not-real",
        }
    )
    yield environment
    subprocess.run(_taskmark("server", "stop"), env=environment, capture_output=True, timeout=60)


def test_run_and_arun_use_the_local_server_the_cli_reports(
    env: dict[str, str], fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "writer.md").write_text("You write.\n")
    path = tmp_path / "api.md"
    path.write_text(DEFINITION)
    fake_llm.default = lambda r: Reply(content="drafted")

    ran = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr
    runs = json.loads(ran.stdout.strip().splitlines()[-1])
    assert [state for _, state in runs] == ["COMPLETED", "COMPLETED"]
    assert fake_llm.count == 2

    status = subprocess.run(_taskmark("server", "status"), env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    api_url = next(line.split()[-1] for line in status.stdout.splitlines() if line.startswith("API:"))
    # Said once, by the call that started the server, with the address the CLI reports.
    assert ran.stderr.count("started the local Prefect server at") == 1
    assert f"started the local Prefect server at {api_url} (UI: {api_url.removesuffix('/api')})" in ran.stderr

    with httpx.Client(base_url=api_url, timeout=10) as client:
        for flow_run_id, _ in runs:
            recorded = client.get(f"/flow_runs/{flow_run_id}")
            assert recorded.status_code == 200, recorded.text
            assert recorded.json()["state_type"] == "COMPLETED"
