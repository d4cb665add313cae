"""One mistake, one error: `taskmark validate` reports each problem once, and the checks after it
still run on the rest of the file. Each test asserts the whole output, so a follow-on error fails it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskmark.cli import app

AGENTS = Path(__file__).parent / "data" / "valid" / "agents"
OPTION_KEYS = (
    "dependsOn, parallel, description, llm, handlers, cache, approval, refers, documents, context, review, "
    "index, duplicates, relatesTo"
)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the agents the definitions use, as the working directory."""
    shutil.copytree(AGENTS, tmp_path / "agents")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _validate(folder: Path, text: str) -> list[str]:
    """The lines `taskmark validate` prints for a definition; it must fail, without a traceback."""
    (folder / "flow.md").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", "flow.md"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[-1] == "1 of 1 definitions invalid"
    return lines[:-1]


RESEARCH_OPTION_LINES = """
## Phase: Research
paralel: true
"""

RESEARCH_YAML_BLOCK = """
## Phase: Research

```yaml
paralel: true
```
"""

MISSPELT_OPTION = """# Misspelt Option

```yaml
name: misspelt-option
requirements:
  topic: string
```
{research}
### Steps
- agent: writer - Research {{{{ topic }}}}

### Outputs
- facts: string

## Phase: Draft
dependsOn: [Research]

### Steps
- agent: writer - Draft from {{{{ phases["Research"].fact }}}}
- validation: len(phases["Research"].facts) > 0
"""


@pytest.mark.parametrize(
    ("research", "lines"),
    [(RESEARCH_OPTION_LINES, (10, 22)), (RESEARCH_YAML_BLOCK, (12, 25))],
    ids=["option-lines", "yaml-block"],
)
def test_misspelt_option_is_reported_once_and_the_phase_kept(
    folder: Path, research: str, lines: tuple[int, int]
) -> None:
    assert _validate(folder, MISSPELT_OPTION.format(research=research)) == [
        f"flow.md:{lines[0]}:1: error: unknown key 'paralel' in phase 'Research' options; expected one of "
        f"{OPTION_KEYS}; did you mean 'parallel'?",
        # Research is still a phase: Draft depends on it, and what Draft reads of it is checked.
        f"flow.md:{lines[1]}:52: error: unknown output 'fact' of phase 'Research'; it declares facts; "
        "did you mean 'facts'?",
    ]


DEPENDENCY_TYPO = """# Dependency Typo

```yaml
name: dependency-typo
requirements:
  topic: string
```

## Phase: Research

### Steps
- agent: writer - Research {{{{ topic }}}}

### Outputs
- facts: string

## Phase: Gather

### Steps
- Collect.

## Phase: Draft
dependsOn: {depends_on}

### Steps
- agent: writer - Draft from {{{{ phases["Research"].facts }}}}
- validation: len(phases["Research"].facts) > 0

## Phase: Publish
dependsOn: [Draft]

### Steps
- agent: editor - Publish {{{{ phases["Draft"] }}}} with {{{{ phases["Research"].facts }}}}
"""


@pytest.mark.parametrize(("depends_on", "column"), [("[Reserch]", 13), ("Reserch", 12), ("[Gather, Reserch]", 21)])
def test_dependency_typo_is_one_error_at_the_name(folder: Path, depends_on: str, column: int) -> None:
    # Draft and Publish read Research, as they would with the name spelt right: no error for that.
    assert _validate(folder, DEPENDENCY_TYPO.format(depends_on=depends_on)) == [
        f"flow.md:23:{column}: error: phase 'Draft' depends on unknown phase 'Reserch'; did you mean 'Research'?"
    ]


METADATA_AND_PHASE_ERRORS = """# Many Errors

```yaml
name: many-errors
maxExecutionTime: 5
colour: blue
requirements:
  topic: string
  audience: {type: strng}
  depth: {type: integer, default: 3}
```

## Phase: Research

### Steps
- agent: writer - Research {{ topik }} for {{ audience }}

### Outputs
- facts: string
- score: integer
  - maximum: depth

## Phase: Draft
dependsOn: [Research]
paralel: true

### Steps
- agent: writer - Draft from {{ phases["Research"].fact }} {% if %}
"""


METADATA_AND_PHASE_ERROR_LIST = [
    (
        5,
        '19: error: maxExecutionTime: expected a time such as "90s", "30 seconds", "2m", "5 minutes", '
        '"1.5 hours", "1h30m"; found 5',
    ),
    (
        6,
        "1: error: unknown key 'colour' in metadata; expected one of name, description, version, "
        "maxExecutionTime, maxConcurrentPhases, retry, llm, requirements, schedule, cache, index, context",
    ),
    (
        9,
        "20: error: requirements.audience.type: unknown type 'strng'; expected one of string, number, "
        "integer, boolean, array, object; did you mean 'string'?",
    ),
    # `audience` is an input still, whose settings are wrong: reading it is no error.
    (
        16,
        "31: error: unknown name 'topik' in prompt template; expected one of topic, audience, depth, "
        "inputs, phases, steps; did you mean 'topic'?",
    ),
    (
        25,
        f"1: error: unknown key 'paralel' in phase 'Draft' options; expected one of {OPTION_KEYS}; "
        "did you mean 'parallel'?",
    ),
    (28, "19: error: invalid prompt template: Expected an expression, got 'end of statement block'"),
]


@pytest.mark.parametrize("named", [True, False], ids=["with-name", "without-name"])
def test_metadata_errors_do_not_hide_the_errors_of_phases(folder: Path, named: bool) -> None:
    # Without a name the metadata is no model at all; its other errors and the phases' are still reported.
    text = METADATA_AND_PHASE_ERRORS if named else METADATA_AND_PHASE_ERRORS.replace("name: many-errors\n", "")
    shift = 0 if named else 1
    missing_name = [] if named else ["flow.md:4:1: error: metadata: missing required key 'name'"]
    assert _validate(folder, text) == missing_name + [
        f"flow.md:{line - shift}:{rest}" for line, rest in METADATA_AND_PHASE_ERROR_LIST
    ]


INDENTATION = """# Indentation

```yaml
name: indentation
requirements:
  topic: string
   audience: string
```

## Phase: Research

```yaml
dependsOn: []
  parallel: true
```

### Steps
- agent: writer - Research {{ topic }} for {{ audience }}

### Outputs
- facts: string

## Phase: Draft
dependsOn: [Research]

### Steps
- agent: writer - Draft from {{ phases["Research"].fact }} for {{ audience }}
"""


def test_indentation_error_points_at_the_line_and_names_the_cause(folder: Path) -> None:
    assert _validate(folder, INDENTATION) == [
        "flow.md:7:4: error: invalid YAML in metadata: mapping values are not allowed in this context "
        "(the likely cause is this line's indentation: 3 spaces, where the lines above are indented 0 or 2)",
        "flow.md:14:3: error: invalid YAML in phase 'Research' options: did not find expected key; while parsing "
        "a block mapping at line 13 (the likely cause is this line's indentation: 2 spaces, where the lines "
        "above are indented 0)",
        # Both blocks are unreadable, yet the phases are checked: only names the metadata would declare pass.
        "flow.md:27:52: error: unknown output 'fact' of phase 'Research'; it declares facts; did you mean 'facts'?",
    ]


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        (
            "name: t\ndescription: a: b",
            "5:15: error: invalid YAML in metadata: mapping values are not allowed in this context",
        ),
        (
            "name: t\nrequirements:\n  topic: [a",
            "7:1: error: invalid YAML in metadata: did not find expected ',' or ']'; while parsing a flow sequence at line 6",
        ),
    ],
    ids=["colon-in-value", "unclosed-list"],
)
def test_other_yaml_errors_do_not_blame_indentation(folder: Path, metadata: str, error: str) -> None:
    text = f"# T\n\n```yaml\n{metadata}\n```\n\n## Phase: A\n\n### Steps\n- Think.\n"
    assert _validate(folder, text) == [f"flow.md:{error}"]
