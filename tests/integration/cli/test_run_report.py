"""What `taskmark run` shows a user: the run's id and UI page as it starts, outputs as YAML.

Runs go through the CLI against Prefect's real server, answered by the fake OpenAI server.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.cli import app

runner = CliRunner()
DEFINITION = """# Brief

```yaml
name: NAME
requirements:
  topic: string
```

## Phase: Brief

### Steps
- agent: writer - Brief on {{ topic }}

### Outputs
- headline: string - The headline
- points: array - What matters, most important first
  - items: {type: string}
"""
ANSWER = {
    "headline": "Tides: what moves them",
    # A line wider than the terminal: wrapped, it would no longer be the YAML of the answer.
    "points": [
        "The moon pulls the sea.",
        "Line one of two\nline two of two",
        "See https://example.com/" + "tides/" * 30,
    ],
}
RUN_LINE = re.compile(r"^Run ([0-9a-f-]{36}): (\S+)$", re.MULTILINE)


@pytest.fixture
def project(
    tmp_path: Path, fake_llm: FakeOpenAIServer, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "writer.md").write_text("You write.\n")
    path = tmp_path / "brief.md"
    path.write_text(DEFINITION.replace("NAME", f"brief-{uuid.uuid4().hex[:8]}"))
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    monkeypatch.setenv("TASKMARK_LLM_API_BASE", fake_llm.api_base)
    monkeypatch.setenv("TASKMARK_LLM_MODEL", "openai/fake-model")
    monkeypatch.setenv("TASKMARK_LLM_API_KEY", "sk-test-not-real")
    fake_llm.default = lambda _r: Reply(content=json.dumps(ANSWER))
    yield path


def test_run_prints_its_id_and_ui_page_at_start(project: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    result = runner.invoke(app, ["run", str(project), "-p", "topic=tides"])

    assert result.exit_code == 0, result.output
    found = RUN_LINE.search(result.stderr)
    assert found, result.stderr
    run_id, page = found.groups()
    ui = str(PREFECT_API_URL.value()).removesuffix("/api")
    assert page == f"{ui}/runs/flow-run/{run_id}"
    # Printed as the run starts: before the first phase's progress line reaches the terminal.
    assert result.output.index(found.group(0)) < result.output.index("Brief")

    async def read() -> str:
        async with get_client() as client:
            return (await client.read_flow_run(uuid.UUID(run_id))).name

    assert asyncio.run(read())  # the id is the flow run's


def test_run_json_prints_no_run_line(project: Path) -> None:
    result = runner.invoke(app, ["run", str(project), "-p", "topic=tides", "--json"])

    assert result.exit_code == 0, result.output
    assert not RUN_LINE.search(result.stderr)
    assert json.loads(result.stdout)["flow_run_id"]


def test_outputs_print_as_yaml_not_python_reprs(project: Path) -> None:
    result = runner.invoke(app, ["run", str(project), "-p", "topic=tides"])

    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "{'" not in text and "['" not in text  # no dict or list reprs
    body = text.split("Brief — completed", 1)[1].split("\n", 1)[1]
    block = body.split("────", 1)[0]
    assert yaml.safe_load(block) == ANSWER
    assert "- |-\n  Line one of two\n  line two of two" in block  # text of several lines as a block
