"""The project as a whole: examples, docs, boundaries, exports, start-up cost."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import taskmark
import taskmark.blocks
import taskmark.cli
import taskmark.definition
import taskmark.deploy
import taskmark.flows
import taskmark.runs
import taskmark.server
import taskmark.tasks
import taskmark.watch
from taskmark.definition import load_definition, render_graph

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "definitions").glob("*.md"))
DOCS = sorted((ROOT / "docs").glob("*.md"))


def test_examples_exist() -> None:
    assert {p.stem for p in EXAMPLES} >= {"investment-committee", "daily-market-analysis", "content-generation"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_validates_cleanly(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmark.definition import validate_file

    monkeypatch.chdir(ROOT)
    report = validate_file(f"definitions/{path.name}")
    assert [str(d) for d in report.diagnostics] == []
    assert report.definition is not None and report.definition.name == path.stem


def test_investment_committee_graph_has_seven_phases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    definition = load_definition("definitions/investment-committee.md")
    assert len(definition.phases) == 7 and len(definition.agents) >= 10
    mermaid = render_graph(definition, "mermaid")
    nodes = re.findall(r'^    p\d+\["', mermaid, re.M)
    edges = re.findall(r"^    p\d+ --> p\d+$", mermaid, re.M)
    assert len(nodes) == 7 and len(edges) == sum(len(p.depends_on) for p in definition.phases) >= 6


def test_daily_market_analysis_runs_weekdays_at_eight_in_new_york(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    definition = load_definition("definitions/daily-market-analysis.md")
    assert definition.metadata.schedule is not None
    assert (definition.metadata.schedule.cron, definition.metadata.schedule.timezone) == (
        "0 8 * * 1-5",
        "America/New_York",
    )
    assert [p.name for p in definition.phases] == [
        "Question Classification",
        "Contextual Agent Selection",
        "Rapid Analysis",
        "Answer Synthesis",
    ]


def _doc_examples() -> list[tuple[str, str]]:
    """Whole definitions (````markdown blocks) and metadata blocks (```yaml with a name)."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for i, match in enumerate(re.finditer(r"^(`{4,})markdown\n(.*?)^\1$", text, re.M | re.S)):
            found.append((f"{doc.stem}-{i}", match.group(2)))
        for i, match in enumerate(re.finditer(r"^```yaml\n(name: .*?)^```$", text, re.M | re.S)):
            definition = f"# T\n\n```yaml\n{match.group(1)}```\n\n## Phase: A\n\n### Steps\n- note\n"
            found.append((f"{doc.stem}-metadata-{i}", definition))
    return found


DOC_EXAMPLES = _doc_examples()


def test_docs_have_examples() -> None:
    assert len(DOC_EXAMPLES) >= 3


@pytest.mark.parametrize(("name", "text"), DOC_EXAMPLES, ids=[n for n, _ in DOC_EXAMPLES])
def test_every_doc_example_is_a_valid_definition(
    name: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # agent files resolve from the project's definitions/agents/
    path = tmp_path / f"{name}.md"
    path.write_text(text, encoding="utf-8")
    load_definition(path)


@pytest.mark.parametrize(
    "module",
    [
        taskmark,
        taskmark.definition,
        taskmark.cli,
        taskmark.flows,
        taskmark.tasks,
        taskmark.deploy,
        taskmark.runs,
        taskmark.server,
        taskmark.blocks,
        taskmark.watch,
    ],
)
def test_exported_members(module: object) -> None:
    exported = module.__all__
    assert sorted(exported) == sorted(set(exported))
    for name in exported:
        assert hasattr(module, name), name


def test_import_boundaries_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_imports_neither_prefect_nor_litellm() -> None:
    code = (
        "import sys\nfrom taskmark.cli import app\n"
        "try:\n    app(['validate', 'definitions'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('prefect', 'litellm') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_source_type_checks_strictly() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("check", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_tree_is_ruff_clean(check: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *check, "--no-cache", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
