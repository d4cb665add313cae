"""`taskmark runs` shows what each run's record says: the same calls, failures and cost as
`taskmark.read_run`, its outcome where Prefect has only COMPLETED, and `-` (not 0) for a run
recorded before the run record existed. Runs go through `taskmark run` against the fake
OpenAI-compatible server, which counts every request."""

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

TWO = """# Two

```yaml
name: NAME
retry: {maxAttempts: 3, backoffMs: 10}
```

## Phase: Draft

### Steps
- agent: a - Draft

## Phase: Polish
dependsOn: Draft

### Steps
- agent: a - Polish {{ phases["Draft"] }}
"""

LOOP = """# Loop

```yaml
name: NAME
```

## Phase: Loop

### Steps
- agent: a - Draft
- validation: output.n > 100

### Outputs
- n: integer

### Critique
- agent: a - Critique {{ output.n }}: {{ errors }}

### Refine
maxRefinements: 1

- agent: a - Revise {{ output.n }} per {{ critique }}
"""


@pytest.fixture
def folder(
    tmp_path: Path, fake_llm: FakeOpenAIServer, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A folder for definitions, with agent `a`; LLM calls go to the fake server."""
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "a.md").write_text("You write.\n")
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    monkeypatch.setenv("TASKMARK_LLM_API_BASE", fake_llm.api_base)
    monkeypatch.setenv("TASKMARK_LLM_MODEL", "openai/fake-model")
    monkeypatch.setenv("TASKMARK_LLM_API_KEY", "sk-test-not-real")
    yield tmp_path


def definition(folder: Path, text: str) -> tuple[Path, str]:
    """Write a definition with a name of its own (the server is shared); its path and name."""
    name = f"runs-{uuid.uuid4().hex[:8]}"
    path = folder / f"{name}.md"
    path.write_text(text.replace("NAME", name))
    return path, name


def run(path: Path, *, exit_code: int = 0) -> str:
    result = runner.invoke(app, ["run", str(path), "--json"])
    assert result.exit_code == exit_code, result.output
    return str(json.loads(result.stdout)["flow_run_id"])


def listed(name: str) -> dict[str, dict[str, Any]]:
    """`taskmark runs --definition NAME --json`, by run id."""
    result = runner.invoke(app, ["runs", "--definition", name, "--json"])
    assert result.exit_code == 0, result.output
    return {row["id"]: row for row in json.loads(result.stdout)}


def table_rows(name: str) -> list[str]:
    result = runner.invoke(app, ["runs", "--definition", name])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[1:]


@pytest.mark.slow
def test_runs_shows_the_records_totals_for_a_completed_and_a_failed_run(
    folder: Path, fake_llm: FakeOpenAIServer
) -> None:
    path, name = definition(folder, TWO)
    fake_llm.push(Reply(status=429, headers={"Retry-After": "0"}, error_message="slow down"))
    completed = run(path)
    fake_llm.default = lambda r: (
        Reply(status=400, error_message="bad") if "Polish" in r.messages[-1]["content"] else Reply(content="drafted")
    )
    failed = run(path, exit_code=1)

    rows = listed(name)
    records = {run_id: taskmark.read_run(run_id) for run_id in (completed, failed)}
    for run_id, record in records.items():
        row, totals = rows[run_id], record.totals
        assert (row["outcome"], row["calls"], row["failed_calls"], row["cost_usd"], row["unpriced_calls"]) == (
            record.outcome,
            totals.calls,
            totals.failed_calls,
            totals.cost_usd,
            totals.unpriced_calls,
        )
    assert [(rows[i]["outcome"], rows[i]["calls"], rows[i]["failed_calls"]) for i in (completed, failed)] == [
        ("completed", 2, 0),
        ("failed", 1, 1),
    ]
    assert sum(r.totals.requests for r in records.values()) == fake_llm.count == 3 + 2  # the 429 counted once
    newest, oldest = (line.split() for line in table_rows(name))
    assert newest[0] == failed and newest[-4:] == ["1", "(1", "failed)", "unpriced"]
    assert oldest[0] == completed and oldest[-2:] == ["2", "unpriced"]


def test_a_run_accepted_with_errors_says_so_in_runs(folder: Path, fake_llm: FakeOpenAIServer) -> None:
    def reply(request: RecordedRequest) -> Reply:
        critique = request.messages[-1]["content"].startswith("Critique")
        return Reply(content="too small") if critique else Reply(content=json.dumps({"n": 3}))

    fake_llm.default = reply
    path, name = definition(folder, LOOP)
    run_id = run(path)

    [row] = listed(name).values()
    assert (row["id"], row["state"], row["outcome"]) == (run_id, "COMPLETED", "accepted_with_errors")
    assert row["calls"] == taskmark.read_run(run_id).totals.calls == fake_llm.count == 3
    [line] = table_rows(name)
    assert line.split()[:3] == [run_id, name, "accepted_with_errors"]


def test_a_run_without_a_record_shows_dashes_not_zeros(folder: Path) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed

    name = f"runs-old-{uuid.uuid4().hex[:8]}"

    @flow(name=name)
    def older() -> None:
        """A run as a taskmark older than the run record left it: tagged, with no record."""

    async def create() -> str:
        async with get_client() as client:
            return str((await client.create_flow_run(older, tags=["taskmark"], state=Completed())).id)

    run_id = asyncio.run(create())

    [row] = listed(name).values()
    assert row["id"] == run_id and row["state"] == "COMPLETED"
    assert (row["outcome"], row["calls"], row["failed_calls"], row["cost_usd"], row["unpriced_calls"]) == (None,) * 5
    [line] = table_rows(name)
    assert line.split()[-2:] == ["-", "-"] and "completed" in line.split()
