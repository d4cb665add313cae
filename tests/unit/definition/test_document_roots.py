"""`documents:` and `index:` reach no file outside the definition's folder, from the user's side:
not by an absolute path, `../` or a link named like a document, unless the user names the
other folder in TASKMARK_DOCUMENT_ROOTS; `taskmark validate` says where, and the reader a run
uses refuses them too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskmark.cli import app
from taskmark.definition import load_definition
from taskmark.definition._context import DocumentOutsideRoots, read_document

runner = CliRunner()

SECRET = "root:x:0:0:not for any model"


def _definition(documents: str, index: str | None = None) -> str:
    meta = f"index: {index}\n" if index else ""
    return f"""# Reader

```yaml
name: reader
{meta}```

## Phase: Read
documents: [{documents}]

### Steps
- agent: reader - Summarise the documents.

### Agents

```yaml
reader:
  systemPrompt: You read.
```
"""


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The definition's folder (the current folder) with docs/a.md, and a folder beside it with a secret."""
    home, elsewhere = tmp_path / "flows", tmp_path / "private"
    (home / "docs").mkdir(parents=True)
    elsewhere.mkdir()
    (home / "docs" / "a.md").write_text("Tides rise twice a day.\n")
    (elsewhere / "secret.md").write_text(SECRET)
    monkeypatch.chdir(home)
    monkeypatch.delenv("TASKMARK_DOCUMENT_ROOTS", raising=False)
    return home, elsewhere


def _validate(text: str) -> tuple[int, list[str]]:
    Path("reader.md").write_text(text)
    result = runner.invoke(app, ["validate", "reader.md"])
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr.splitlines()


def _at(text: str, needle: str) -> str:
    """LINE:COL (1-based) of the first ``needle`` in ``text``."""
    line = next(i for i, row in enumerate(text.splitlines()) if needle in row)
    return f"{line + 1}:{text.splitlines()[line].index(needle) + 1}"


def test_a_link_named_like_a_document_that_leads_outside_is_an_error_at_its_entry(folders: tuple[Path, Path]) -> None:
    home, elsewhere = folders
    (home / "docs" / "x.md").symlink_to(elsewhere / "secret.md")
    text = _definition("docs/*.md, docs/x.md")
    code, errors = _validate(text)
    outside = (
        f"resolves to {(elsewhere / 'secret.md').resolve().as_posix()}, outside the definition's folder "
        f"({home.resolve().as_posix()}); to allow another folder, name it in TASKMARK_DOCUMENT_ROOTS"
    )
    assert code == 1
    assert errors == [
        f"reader.md:{_at(text, 'docs/*.md')}: error: documents: 'docs/*.md' matches 'docs/x.md', which {outside}",
        f"reader.md:{_at(text, 'docs/x.md')}: error: documents: 'docs/x.md' {outside}",
        "1 of 1 definitions invalid",
    ]


def test_absolute_paths_and_parent_folders_are_errors_and_so_is_an_index_outside(folders: tuple[Path, Path]) -> None:
    home, elsewhere = folders
    absolute = (elsewhere / "secret.md").as_posix()
    text = _definition(f"{absolute}, ../private/*.md", index="../private/secret.md")
    code, errors = _validate(text)
    real = (elsewhere / "secret.md").resolve().as_posix()
    outside = (
        f"resolves to {real}, outside the definition's folder ({home.resolve().as_posix()}); "
        "to allow another folder, name it in TASKMARK_DOCUMENT_ROOTS"
    )
    assert code == 1
    assert errors == [
        f"reader.md:{_at(text, '../private/secret.md')}: error: index: '../private/secret.md' {outside}",
        f"reader.md:{_at(text, absolute)}: error: documents: '{absolute}' {outside}",
        f"reader.md:{_at(text, '../private/*')}: error: documents: '../private/*.md' matches "
        f"'../private/secret.md', which {outside}",
        "1 of 1 definitions invalid",
    ]


def test_a_folder_named_in_the_setting_may_be_read(folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    home, elsewhere = folders
    (home / "docs" / "x.md").symlink_to(elsewhere / "secret.md")
    # Written like PATH: an empty entry names nothing, any listed folder is allowed.
    monkeypatch.setenv("TASKMARK_DOCUMENT_ROOTS", os.pathsep.join(["", str(home.parent / "other"), str(elsewhere)]))
    code, errors = _validate(_definition("docs/*.md, ../private/*.md", index="../private/secret.md"))
    assert (code, errors) == (0, [])
    definition = load_definition("reader.md")
    # x.md and ../private/secret.md are one file, taken once.
    assert [p.as_posix() for p in definition.documents(definition.phase("Read"))] == ["docs/a.md", "docs/x.md"]
    assert read_document(home / "docs" / "x.md", home) == SECRET


def test_a_link_that_stays_inside_the_folder_is_fine(folders: tuple[Path, Path]) -> None:
    home, _ = folders
    (home / "docs" / "same.md").symlink_to(home / "docs" / "a.md")
    assert _validate(_definition("docs/*.md")) == (0, [])


def test_the_reader_refuses_a_document_that_became_a_link_outside_after_validation(
    folders: tuple[Path, Path],
) -> None:
    home, elsewhere = folders
    (home / "docs" / "x.md").write_text("An honest note.\n")
    Path("reader.md").write_text(_definition("docs/*.md"))
    definition = load_definition("reader.md")
    (home / "docs" / "x.md").unlink()
    (home / "docs" / "x.md").symlink_to(elsewhere / "secret.md")
    paths = definition.documents(definition.phase("Read"))
    assert read_document(paths[0], definition.source_dir) == "Tides rise twice a day.\n"
    with pytest.raises(DocumentOutsideRoots) as refused:
        read_document(paths[1], definition.source_dir)
    assert str(refused.value) == (
        f"refused to read document 'docs/x.md': it resolves to {(elsewhere / 'secret.md').resolve().as_posix()}, "
        f"outside the definition's folder ({home.resolve().as_posix()}); to allow another folder, name it in "
        "TASKMARK_DOCUMENT_ROOTS"
    )
    assert SECRET not in str(refused.value)
