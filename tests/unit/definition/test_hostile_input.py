"""No input ever produces a traceback: each gives a located error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from taskmark.definition import _yaml, load_definition, validate_file
from taskmark.definition._source import MAX_FILE_BYTES
from taskmark.errors import DefinitionError

HEADER = "# T\n\n```yaml\nname: t\n```\n\n## Phase: A\n\n### Steps\n- note\n"


def _errors(path: Path) -> list[str]:
    report = validate_file(str(path))
    assert report.definition is None
    return [str(d) for d in report.diagnostics]


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "b.md"
    path.write_bytes(b"# T\nab\x00\x01\x02")
    assert _errors(path) == [f"{path}:2:3: error: file is not text: found a NUL byte; expected a UTF-8 markdown file"]


def test_wrong_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.md"
    path.write_bytes("# Café\n\nna\u00efve".encode("latin-1"))
    assert _errors(path) == [
        f"{path}:1:6: error: file is not valid UTF-8: found byte 0xe9; expected a UTF-8 markdown file"
    ]


def test_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "huge.md"
    with path.open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    assert _errors(path) == [
        f"{path}:1: error: file is too large: 50.0 MiB; definitions are limited to {MAX_FILE_BYTES // 2**20} MiB"
    ]


def test_unreadable_path_is_located(tmp_path: Path) -> None:
    assert _errors(tmp_path) == [f"{tmp_path}:1: error: cannot read file: Is a directory"]


def test_yaml_alias_bomb(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    path = tmp_path / "bomb.md"
    path.write_text("# T\n\n```yaml\n" + bomb + "```\n")
    assert f"{path}:5:8: error: YAML aliases (*name) are not allowed in definitions; write the value out" in _errors(
        path
    )


@pytest.fixture(params=["libyaml", "python"])
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each YAML check holds with libyaml (its own nesting limits) and with PyYAML's pure parser."""
    if request.param == "python":
        monkeypatch.setattr(_yaml, "_LOADER", yaml.SafeLoader)
    else:
        assert _yaml._LOADER is yaml.CSafeLoader


@pytest.mark.usefixtures("yaml_loader")
@pytest.mark.parametrize("brackets", [65, 999, 1001, 5000])
def test_deeply_nested_flow_yaml(tmp_path: Path, brackets: int) -> None:
    path = tmp_path / "deep.md"
    path.write_text("# T\n\n```yaml\nname: " + "[" * brackets + "]" * brackets + "\n```\n")
    # The metadata mapping is level 1; "name: " takes columns 1-6, so level 65 is the 64th bracket.
    assert f"{path}:4:70: error: YAML nested deeper than 64 levels" in _errors(path)


@pytest.mark.usefixtures("yaml_loader")
def test_deeply_nested_block_yaml(tmp_path: Path) -> None:
    path = tmp_path / "deep.md"
    nested = "".join(" " * i + f"k{i}:\n" for i in range(200)) + " " * 200 + "x\n"
    path.write_text("# T\n\n```yaml\n" + nested + "```\n")
    # The metadata mapping is level 1, so level 65 is the value of k63: its key k64 on line 4 + 64.
    assert f"{path}:68:65: error: YAML nested deeper than 64 levels" in _errors(path)


@pytest.mark.usefixtures("yaml_loader")
def test_yaml_syntax_error_is_still_located(tmp_path: Path) -> None:
    path = tmp_path / "broken.md"
    path.write_text("# T\n\n```yaml\nname: t\nrequirements: {topic: string\n```\n")
    assert any(e.startswith(f"{path}:6:1: error: invalid YAML in metadata: ") for e in _errors(path))


def test_deeply_nested_markdown(tmp_path: Path) -> None:
    path = tmp_path / "lists.md"
    path.write_text(HEADER + "".join("  " * i + "- x\n" for i in range(500)) + "> " * 3000 + "quote\n")
    assert validate_file(str(path)).ok


@pytest.mark.parametrize(
    "text",
    [
        "\n\n\n",
        "```yaml\n",
        "# T\n```yaml\n",
        "---\n---\n",
        "## Phase:\n",
        "# T\n\n## Phase: \n### Steps\n- agent:",
        "# T\n```yaml\nname: t\n```\n## Phase: A\n### Steps\n- agent: x -  \n",
        "\ufeff",
        "\r\r\r",
        "# \x7f\n",
    ],
)
def test_odd_text_gives_located_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "odd.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_definition(path)
    assert all(d.path == str(path) and d.line >= 1 for d in caught.value.diagnostics)


def test_agent_id_cannot_escape_the_agents_folder(tmp_path: Path) -> None:
    (tmp_path / "secret.md").write_text("not an agent")
    (tmp_path / "defs").mkdir()
    path = tmp_path / "defs" / "f.md"
    path.write_text(HEADER.replace("- note", "- agent: ../secret - hi"))
    errors = _errors(path)
    assert len(errors) == 1 and "unknown agent '../secret'" in errors[0]
