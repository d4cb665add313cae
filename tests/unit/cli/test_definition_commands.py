"""validate, graph, show and schema, from the user's side."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskmark.cli import app

DATA = Path(__file__).parents[1] / "definition" / "data"
runner = CliRunner()


@pytest.fixture
def corpus(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(DATA)
    return DATA


def test_validate_valid_folder_exits_0(corpus: Path) -> None:
    result = runner.invoke(app, ["validate", "valid/"])
    assert result.exit_code == 0, result.output
    assert "ok: valid/full.md (3 phases)" in result.stdout


def test_validate_invalid_file_exits_1_with_located_messages(corpus: Path) -> None:
    result = runner.invoke(app, ["validate", "invalid/cycle.md"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "invalid/cycle.md:10:12: error: dependency cycle: A → C → B → A (each phase depends on the next)",
        "1 of 1 definitions invalid",
    ]
    assert "Traceback" not in result.output


def test_validate_reports_every_invalid_file_of_a_folder(corpus: Path) -> None:
    result = runner.invoke(app, ["validate", "invalid", "valid/minimal.md"])
    assert result.exit_code == 1
    expected = sum(1 for _ in (DATA / "invalid").glob("*.md"))
    assert f"{expected} of {expected + 1} definitions invalid" in result.stderr
    assert "ok: valid/minimal.md" in result.stdout


def test_validate_json_for_editors(corpus: Path) -> None:
    result = runner.invoke(app, ["validate", "--format", "json", "invalid/retry-bounds.md"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {
            "path": "invalid/retry-bounds.md",
            "line": 7,
            "column": 22,
            "severity": "error",
            "message": "retry.maxAttempts: input should be greater than or equal to 1; found 0",
        },
        {
            "path": "invalid/retry-bounds.md",
            "line": 7,
            "column": 36,
            "severity": "error",
            "message": "retry.backoffMs: input should be greater than or equal to 0; found -5",
        },
    ]


@pytest.mark.parametrize(
    "args",
    [["validate", "missing.md"], ["validate"], ["graph", "missing.md"], ["validate", "--format", "xml", "valid"]],
)
def test_usage_errors_exit_2(corpus: Path, args: list[str]) -> None:
    assert runner.invoke(app, args).exit_code == 2


def test_validate_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 2 and "no definition files" in result.output


def test_binary_file_gives_located_error_not_traceback(tmp_path: Path) -> None:
    path = tmp_path / "x.md"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{path}:3:1: error: file is not text")
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_graph_mermaid_dot_json(corpus: Path) -> None:
    mermaid = runner.invoke(app, ["graph", "valid/full.md"])
    assert mermaid.exit_code == 0
    assert mermaid.stdout.splitlines() == [
        "flowchart TD",
        '    p0["Research ∥"]',
        '    p1["Draft"]',
        '    p2["Publish"]',
        "    p0 --> p1",
        "    p1 --> p2",
    ]
    dot = runner.invoke(app, ["graph", "--format", "dot", "valid/full.md"])
    assert "p0 -> p1;" in dot.stdout and dot.stdout.startswith('digraph "full-tour" {')
    graph = json.loads(runner.invoke(app, ["graph", "--format", "json", "valid/full.md"]).stdout)
    assert graph["edges"] == [
        {"from": "Research", "to": "Draft", "kind": "requires"},
        {"from": "Draft", "to": "Publish", "kind": "requires"},
    ]


def test_graph_of_invalid_definition_exits_1(corpus: Path) -> None:
    result = runner.invoke(app, ["graph", "invalid/cycle.md"])
    assert result.exit_code == 1 and "dependency cycle" in result.stderr and result.stdout == ""


def test_show_lists_phases_in_run_order(corpus: Path) -> None:
    result = runner.invoke(app, ["show", "valid/full.md"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    out = result.stdout
    assert out.index("1. Research") < out.index("2. Draft") < out.index("3. Publish (sequential after Draft)")
    assert "aggregate concat" in out and "critique by editor" in out and "topic: string (required)" in out


def test_schema_is_generated_from_the_models() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)["$defs"]
    assert set(schema["metadata"]["properties"]) >= {"name", "maxExecutionTime", "requirements", "schedule", "retry"}
    assert schema["phaseOptions"]["properties"]["dependsOn"]["description"].startswith("Phases that must complete")
    assert schema["metadata"]["additionalProperties"] is False


def test_paths_are_shown_as_the_user_typed_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(DATA / "invalid", tmp_path / "defs")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["validate", "./defs/bad-slug.md"])
    assert result.stderr.startswith("./defs/bad-slug.md:4:7: error: name: expected a slug")
