"""A phase whose refine loop ended at its limit with checks still failing is shown as
accepted_with_errors, with the failed checks, wherever a user looks: the terminal, `--json`,
the hooks and events, and the run record (issue 16 item 2)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import taskmark
from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from taskmark.cli import app

runner = CliRunner()

LOOP = """# Loop

```yaml
name: {name}
```

## Phase: Loop

### Steps
- agent: a - Draft
- validation: output.n > 100

### Outputs
- n: integer

### Critique
- agent: critic - Critique {{{{ output.n }}}}: {{{{ errors }}}}

### Refine
maxRefinements: 1

- agent: reviser - Revise {{{{ output.n }}}} per {{{{ critique }}}}
"""


@pytest.fixture
def definition(
    tmp_path: Path, fake_llm: FakeOpenAIServer, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "agents").mkdir()
    for agent in ("a", "critic", "reviser"):
        (tmp_path / "agents" / f"{agent}.md").write_text(f"You are {agent}.\n")
    path = tmp_path / "loop.md"
    path.write_text(LOOP.format(name=f"awe-{uuid.uuid4().hex[:8]}"))
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    monkeypatch.setenv("TASKMARK_LLM_API_BASE", fake_llm.api_base)
    monkeypatch.setenv("TASKMARK_LLM_MODEL", "openai/fake-model")
    monkeypatch.setenv("TASKMARK_LLM_API_KEY", "sk-test-not-real")

    def reply(request: RecordedRequest) -> Reply:
        prompt = next(m["content"] for m in request.messages if m["role"] == "user")
        return Reply(content="too small") if prompt.startswith("Critique") else Reply(content=json.dumps({"n": 3}))

    fake_llm.default = reply
    yield path


def test_the_terminal_shows_the_phase_and_the_run_accepted_with_errors(definition: Path) -> None:
    result = runner.invoke(app, ["run", str(definition)])
    assert result.exit_code == 0, result.output
    assert "accepted_with_errors  Loop" in result.stdout
    assert "a still fails: validation `output.n > 100` is false" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("accepted with errors in ")


def test_json_hooks_and_the_record_say_accepted_with_errors(definition: Path) -> None:
    seen: list[dict[str, Any]] = []
    ran = runner.invoke(app, ["run", str(definition), "--json"])
    assert ran.exit_code == 0, ran.output
    report = json.loads(ran.stdout)
    assert report["state"] == "COMPLETED" and report["outcome"] == "accepted_with_errors"
    loop = report["phases"]["Loop"]
    assert loop["state"] == "ACCEPTED_WITH_ERRORS" and loop["outputs"] == {"n": 3}
    assert list(loop["failed_checks"]) == ["a"]

    again = asyncio.run(taskmark.arun(definition, hooks={"phase:complete": [seen.append]}))
    assert again.outcome == "accepted_with_errors"
    (event,) = seen
    assert event["state"] == "accepted_with_errors" and list(event["failed_checks"]) == ["a"]
    assert again.flow_run_id is not None
    assert taskmark.read_run(again.flow_run_id).phases[0].state == "accepted_with_errors"
