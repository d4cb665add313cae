"""`taskmark run` and the Python API, from the user's side, against Prefect's real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.cli import app

runner = CliRunner()
DEFINITION = """# Two Steps

```yaml
name: two-steps
requirements:
  topic: string
  rounds: {type: integer, default: 1}
```

## Phase: Draft

### Steps
- agent: writer - Draft on {topic}

## Phase: Polish
dependsOn: Draft

### Steps
- agent: writer - Polish {draft}
"""


@pytest.fixture
def project(
    tmp_path: Path, fake_llm: FakeOpenAIServer, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "writer.md").write_text("You write.\n")
    path = tmp_path / "two.md"
    path.write_text(DEFINITION.replace("{topic}", "{{ topic }}").replace("{draft}", '{{ phases["Draft"] }}'))
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    monkeypatch.setenv("TASKMARK_LLM_API_BASE", fake_llm.api_base)
    monkeypatch.setenv("TASKMARK_LLM_MODEL", "openai/fake-model")
    monkeypatch.setenv("TASKMARK_LLM_API_KEY", "sk-test-not-real")
    yield path


def test_run_completes_and_shows_outputs(project: Path, fake_llm: FakeOpenAIServer) -> None:
    fake_llm.default = lambda r: Reply(content="polished" if "Polish" in r.messages[-1]["content"] else "drafted")
    result = runner.invoke(app, ["run", str(project), "--param", "topic=tides"])
    assert result.exit_code == 0, result.output
    assert "polished" in result.stdout and "drafted" in result.stdout
    assert "answered by openai/fake-model" in result.stdout
    assert fake_llm.requests[1].messages[-1]["content"] == "Polish drafted"


def test_run_json_reports_exact_calls(project: Path, fake_llm: FakeOpenAIServer) -> None:
    result = runner.invoke(app, ["run", str(project), "-p", "topic=x", "-p", "rounds=3", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["state"] == "COMPLETED" and report["usage"]["calls"] == 2 == fake_llm.count
    assert list(report["phases"]) == ["Draft", "Polish"]
    assert report["phases"]["Draft"]["state"] == "COMPLETED" and report["flow_run_id"]
    assert set(report) >= {"flow_run_id", "state", "duration_s", "phases", "usage"}


def test_failed_run_exits_1_naming_phase_stage_and_reason(project: Path, fake_llm: FakeOpenAIServer) -> None:
    fake_llm.default = lambda _r: Reply(status=401, error_message="invalid key")
    result = runner.invoke(app, ["run", str(project), "-p", "topic=x"])
    assert result.exit_code == 1
    assert "phase 'Draft' failed in inference" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "topic=x", "-p", "rounds=many"], "rounds: expected integer"),
        (["-p", "nope=1"], "unknown input 'nope'"),
        ([], "topic"),
        (["-p", "topic"], "expected K=V"),
    ],
)
def test_bad_inputs_exit_2_before_any_call(
    project: Path, fake_llm: FakeOpenAIServer, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["run", str(project), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert fake_llm.count == 0


def test_invalid_definition_exits_2_with_located_error(project: Path) -> None:
    project.write_text(project.read_text().replace("dependsOn: Draft", "dependsOn: Drafts"))
    result = runner.invoke(app, ["run", str(project), "-p", "topic=x"])
    assert result.exit_code == 2
    assert (
        f"{project}:16:12: error: phase 'Polish' depends on unknown phase 'Drafts'; did you mean 'Draft'?"
        in result.stderr
    )


def test_python_api(project: Path, fake_llm: FakeOpenAIServer) -> None:
    import taskmark

    seen: list[str] = []
    taskmark.on("phase:complete", lambda p: seen.append(str(p["phase"])))
    result = taskmark.run(project, topic="tides")
    assert result.state == "COMPLETED"
    assert seen[-2:] == ["Draft", "Polish"]
    assert taskmark.compile(taskmark.load(project)).name == "two-steps"
