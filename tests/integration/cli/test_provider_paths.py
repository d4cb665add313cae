"""`taskmark run` and the provider it reaches: `--api-base` alone against a keyless server,
and call errors that say what happened — from the user's side, with no provider key set."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from support.fake_openai import FakeOpenAIServer, Reply, schema_reply
from taskmark.cli import app

DEFINITIONS = Path(__file__).parents[3] / "definitions"

DEFINITION = """# Provider Paths

```yaml
name: provider-paths
retry: {maxAttempts: 2, backoffMs: 1}
llm: {model: gpt-4o-mini}
requirements:
  question: string
```

## Phase: Count

### Steps
- agent: counter - How many? {{ question }}

### Outputs
- n: integer - How many
"""


@pytest.fixture
def project(tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Path:
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "counter.md").write_text("You count.\n")
    path = tmp_path / "paths.md"
    path.write_text(DEFINITION)
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    assert "OPENAI_API_KEY" not in os.environ  # the suite's hermetic environment
    return path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_api_base_alone_reaches_a_keyless_server(project: Path, fake_llm: FakeOpenAIServer) -> None:
    fake_llm.default = lambda _r: Reply(content='{"n": 3}')
    result = CliRunner().invoke(
        app, ["run", str(project), "-p", "question=x", "--api-base", fake_llm.api_base, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert fake_llm.count == 1
    assert fake_llm.requests[0].body["model"] == "gpt-4o-mini"  # the definition's model, sent as it is
    assert json.loads(result.stdout)["phases"]["Count"]["outputs"] == {"n": 3}
    assert "no-key-required" not in result.output


@pytest.mark.slow
def test_the_readme_example_runs_with_api_base_alone(
    fake_llm: FakeOpenAIServer, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    fake_llm.default = schema_reply
    path = DEFINITIONS / "daily-market-analysis.md"
    args = ["run", str(path), "-p", "question=x", "--api-base", fake_llm.api_base, "--json", "--no-cache"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "COMPLETED"
    assert fake_llm.count == 7
    assert {r.body["model"] for r in fake_llm.requests} == {"gpt-4o-mini"}


def test_a_refused_connection_names_the_url(project: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    result = CliRunner().invoke(app, ["run", str(project), "-p", "question=x", "--api-base", url])
    assert result.exit_code == 1
    assert f"could not connect to {url} (connection refused) (gave up after 2 attempts)" in result.stderr
    assert "HTTP 500" not in result.output and "Traceback" not in result.output


def test_a_missing_key_names_the_variable_to_set(project: Path, fake_llm: FakeOpenAIServer) -> None:
    result = CliRunner().invoke(app, ["run", str(project), "-p", "question=x", "--model", "gpt-4o-mini"])
    assert result.exit_code == 1
    assert (
        "no API key for 'gpt-4o-mini' (set OPENAI_API_KEY or TASKMARK_LLM_API_KEY, or pass --api-key)" in result.stderr
    )
    assert "Missing credentials" not in result.output and "HTTP 500" not in result.output
    assert fake_llm.count == 0


def test_json_that_breaks_the_outputs_says_so(project: Path, fake_llm: FakeOpenAIServer) -> None:
    fake_llm.default = lambda _r: Reply(content='{"n": "many"}')
    result = CliRunner().invoke(app, ["run", str(project), "-p", "question=x", "--api-base", fake_llm.api_base])
    assert result.exit_code == 1
    assert "does not match the declared outputs after one repair (n: 'many' is not of type 'integer')" in result.stderr
    assert "valid JSON" not in result.output
    assert fake_llm.count == 2  # the call and its one repair; a wrong shape is not retried
