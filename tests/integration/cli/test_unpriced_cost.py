"""A run whose model has no known price says `unpriced`, never `$0.0000`: in `taskmark run`'s
last line and in `taskmark runs`' cost column."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.cli import app

runner = CliRunner()


@pytest.fixture
def definition(
    tmp_path: Path, fake_llm: FakeOpenAIServer, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, str]]:
    """A one-phase definition answered by the fake server's model, which litellm has no price for."""
    from prefect.settings import PREFECT_API_URL

    name = f"unpriced-{uuid.uuid4().hex[:8]}"
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "writer.md").write_text("You write.\n")
    path = tmp_path / "brief.md"
    path.write_text(f"# Brief\n\n```yaml\nname: {name}\n```\n\n## Phase: Brief\n\n### Steps\n- agent: writer - Go\n")
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    monkeypatch.setenv("TASKMARK_LLM_API_BASE", fake_llm.api_base)
    monkeypatch.setenv("TASKMARK_LLM_MODEL", "openai/fake-model")
    monkeypatch.setenv("TASKMARK_LLM_API_KEY", "sk-test-not-real")
    fake_llm.default = lambda _r: Reply(content="done")
    yield path, name


def test_run_and_runs_say_unpriced_for_a_model_without_a_price(definition: tuple[Path, str]) -> None:
    path, name = definition
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("completed in ") and " tokens · unpriced · answered by openai/fake-model" in last, last
    assert "$0.0000" not in result.stdout

    listed = runner.invoke(app, ["runs", "--definition", name])
    assert listed.exit_code == 0, listed.output
    [row] = listed.stdout.splitlines()[1:]
    assert row.split()[-2:] == ["1", "unpriced"], row
    [run] = json.loads(runner.invoke(app, ["runs", "--definition", name, "--json"]).stdout)
    assert (run["calls"], run["cost_usd"], run["unpriced_calls"]) == (1, 0.0, 1)
