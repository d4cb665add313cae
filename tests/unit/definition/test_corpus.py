"""The corpus: each invalid file with its exact expected messages, each valid file loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taskmark.definition import load_definition, validate_file
from taskmark.errors import DefinitionError

DATA = Path(__file__).parent / "data"
INVALID = sorted((DATA / "invalid").glob("*.md"))
VALID = sorted((DATA / "valid").glob("*.md"))


def test_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 20


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_file_reports_exactly_the_expected_messages(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(path.parent)
    expected = path.with_suffix(".err").read_text(encoding="utf-8")
    report = validate_file(path.name)
    assert report.definition is None
    assert "".join(f"{d}\n" for d in report.diagnostics) == expected
    first_error = next(line for line in expected.splitlines() if ": error: " in line)
    with pytest.raises(DefinitionError, match="^" + re.escape(first_error)):
        load_definition(path.name)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_file_loads_without_diagnostics(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(path.parent)
    report = validate_file(path.name)
    assert [str(d) for d in report.diagnostics] == []
    assert report.definition is not None
