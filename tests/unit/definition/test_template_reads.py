"""Templates in definitions, from the user's side (`taskmark validate` and the Python API):
the field names read from upstream phases are checked against what those phases hold, each
error at the very name; Jinja's own names (``loop``, ``caller``, ...) are not unknown; loops
and sizes past the sandbox's bounds are refused by validate where it can tell, and by the
renderer where it cannot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskmark.cli import app
from taskmark.definition import render_template
from taskmark.definition._sandbox import MAX_LOOP_ITERATIONS, MAX_OUTPUT_CHARS, MAX_RANGE, TemplateLimitError

runner = CliRunner()

HEAD = """# Brief

```yaml
name: brief
requirements:
  topic: string
  n: {type: integer, default: 3}
```

## Phase: Research

### Steps
- agent: writer - Research {{ topic }}.

### Outputs
- summary: string
- sources: array

## Phase: Panel
parallel: true

### Steps
- agent: writer - One view of {{ topic }}.
- agent: editor - Another view of {{ topic }}.
- aggregate: merge

### Outputs
- summary: string

"""

AGENTS = """
### Agents

```yaml
writer:
  systemPrompt: You write.
editor:
  systemPrompt: You edit.
```
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _validate(text: str) -> tuple[int, list[str]]:
    Path("brief.md").write_text(text)
    result = runner.invoke(app, ["validate", "brief.md"])
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr.splitlines()


def _at(text: str, needle: str, line_with: str | None = None) -> str:
    """LINE:COL (1-based) of ``needle`` on the first line that holds ``line_with`` (or ``needle``)."""
    rows = text.splitlines()
    line = next(i for i, row in enumerate(rows) if (line_with or needle) in row)
    return f"{line + 1}:{rows[line].index(needle) + 1}"


def _write(steps: str, outputs: str = "- summary: string\n") -> str:
    return (
        HEAD
        + "## Phase: Write\ndependsOn: [Research, Panel]\n\n### Steps\n"
        + steps
        + "\n### Outputs\n"
        + outputs
        + AGENTS
    )


# -- 12: field names of upstream outputs -------------------------------------------------------


def test_a_misspelt_output_of_an_upstream_phase_is_an_error_at_the_name_with_did_you_mean() -> None:
    text = _write('- agent: writer - Write on {{ topic }} from {{ phases["Research"].sumary }}\n')
    code, errors = _validate(text)
    assert code == 1
    assert errors == [
        f"brief.md:{_at(text, 'sumary')}: error: unknown output 'sumary' of phase 'Research'; "
        "it declares summary, sources; did you mean 'summary'?",
        "1 of 1 definitions invalid",
    ]


def test_names_are_located_on_continuation_lines_and_in_attribute_form() -> None:
    text = _write(
        "- agent: writer - Write on {{ topic }}\n"
        "  using {{ phases.Research.sorces|join(', ') }} and {{ audiance }}\n"
        "  and {{ phases['Research'].summary }}\n"
    )
    code, errors = _validate(text)
    assert code == 1
    assert errors == [
        f"brief.md:{_at(text, 'sorces')}: error: unknown output 'sorces' of phase 'Research'; "
        "it declares summary, sources; did you mean 'sources'?",
        f"brief.md:{_at(text, 'audiance')}: error: unknown name 'audiance' in prompt template; "
        "expected one of topic, n, inputs, phases, steps",
        "1 of 1 definitions invalid",
    ]


def test_a_merged_phase_holds_its_agents_answers_and_each_answer_its_declared_outputs() -> None:
    text = _write(
        '- agent: writer - Write from {{ phases["Panel"].summary }}\n'
        '  and {{ phases["Panel"]["editor"].sumary }} and {{ phases["Panel"].writr }}\n'
    )
    code, errors = _validate(text)
    assert code == 1
    assert errors == [
        f"brief.md:{_at(text, 'summary', 'Write from')}: error: unknown key 'summary' in phases['Panel']: the phase "
        "merges its answers by agent, so it holds writer, editor; read one agent's answer, as "
        "phases['Panel']['writer'].summary",
        f"brief.md:{_at(text, 'sumary')}: error: unknown output 'sumary' of phases['Panel']['editor']; "
        "phase 'Panel' declares summary; did you mean 'summary'?",
        f"brief.md:{_at(text, 'writr')}: error: unknown key 'writr' in phases['Panel']: the phase merges its "
        "answers by agent, so it holds writer, editor; did you mean 'writer'?",
        "1 of 1 definitions invalid",
    ]


def test_validation_expressions_and_earlier_steps_are_checked_the_same_way() -> None:
    text = _write(
        "- agent: writer - Draft on {{ topic }}\n"
        '- agent: editor - Edit {{ steps["writer"].sumary }}\n'
        '- validation: len(phases["Research"].sumary) > 0 and output.summry != ""\n'
    )
    code, errors = _validate(text)
    assert code == 1
    assert errors == [
        f"brief.md:{_at(text, 'sumary', 'steps')}: error: unknown output 'sumary' of steps['writer']; "
        "phase 'Write' declares summary; did you mean 'summary'?",
        f"brief.md:{_at(text, 'sumary', 'validation')}: error: unknown output 'sumary' of phase 'Research'; "
        "it declares summary, sources; did you mean 'summary'?",
        f"brief.md:{_at(text, 'summry')}: error: unknown output 'summry'; phase 'Write' declares summary; "
        "did you mean 'summary'?",
        "1 of 1 definitions invalid",
    ]


def test_what_the_upstream_phases_hold_is_accepted() -> None:
    text = _write(
        '- agent: writer - {{ phases["Research"].summary }} {{ phases.Research.sources }}\n'
        '  {{ phases["Panel"]["writer"].summary }} {% for k, v in phases["Panel"].items() %}{{ k }}{% endfor %}\n'
        "  {{ phases.Research.get('summary') }}\n"
        '- validation: len(output.summary) > 0 and phases["Panel"]["editor"].summary != ""\n'
    )
    assert _validate(text) == (0, [])


# -- 13: the names Jinja defines -----------------------------------------------------------------


def test_the_names_jinja_defines_in_loops_macros_and_blocks_are_not_unknown() -> None:
    text = _write(
        "- agent: writer - Write on {{ topic }}:\n"
        '  {% for s in phases["Research"].sources %}{{ loop.index }}/{{ loop.length }}. {{ s }}'
        "{% if not loop.last %}; {% endif %}{% endfor %}\n"
        "  {% macro item(x) %}- {{ x }}{{ varargs|join }}{{ kwargs }}{{ caller() }}{% endmacro %}\n"
        "  {% call item(1, 2) %}body{% endcall %}{% set y = 2 %}{{ y }}{% with z = 3 %}{{ z }}{% endwith %}\n"
        "  {% for a in [[1]] recursive %}{{ loop.depth }}{% endfor %}\n"
    )
    assert _validate(text) == (0, [])


def test_names_stay_unknown_outside_the_block_that_defines_them_and_filters_and_tests_must_exist() -> None:
    text = _write(
        "- agent: writer - {% for s in [1] %}{{ s }}{% endfor %}{{ loop.index }}\n"
        "  {{ x is definedd }} {{ topic|uper }}\n"
    )
    code, errors = _validate(text)
    assert code == 1
    names = "expected one of topic, n, inputs, phases, steps"
    assert errors == [
        f"brief.md:{_at(text, 'loop')}: error: unknown name 'loop' in prompt template; {names}",
        f"brief.md:{_at(text, 'x is')}: error: unknown name 'x' in prompt template; {names}",
        f"brief.md:{_at(text, 'definedd')}: error: unknown test 'definedd'; did you mean 'defined'?",
        f"brief.md:{_at(text, 'uper')}: error: unknown filter 'uper'; did you mean 'upper'?",
        "1 of 1 definitions invalid",
    ]


def test_jinja_loop_names_render() -> None:
    rendered = render_template(
        "{% for x in xs %}{{ loop.index }}.{{ x }}{% if not loop.last %}, {% endif %}{% endfor %}",
        {"xs": ["a", "b"]},
    )
    assert rendered == "1.a, 2.b"


# -- 14: bounds ------------------------------------------------------------------------------------


def test_validate_refuses_a_range_over_the_cap_and_nested_loops_over_the_limit() -> None:
    text = _write(
        "- agent: writer - {% for i in range(100000) %}.{% endfor %}\n"
        "  {% for i in range(1000) %}{% for j in range(10) %}{% for k in range(1000) %}"
        "{% endfor %}{% endfor %}{% endfor %}\n"
        '  {% include "other.md" %}\n'
    )
    code, errors = _validate(text)
    rows = text.splitlines()
    nested = next(i for i, r in enumerate(rows) if "range(1000) %}{% endfor" in r)
    assert code == 1
    assert errors == [
        f"brief.md:{_at(text, 'range(100000)')}: error: range(100000) holds 100,000 numbers; "
        f"a template's range() may hold at most {MAX_RANGE:,}",
        f"brief.md:{nested + 1}:{rows[nested].rindex('range(1000)') + 1}: error: these nested loops would run "
        f"10,000,000 times; a template may loop at most {MAX_LOOP_ITERATIONS:,} times in all",
        f"brief.md:{_at(text, 'include')}: error: a prompt cannot include another template ('{{% include %}}'); "
        "templates here have no files to load",
        "1 of 1 definitions invalid",
    ]


@pytest.mark.parametrize(
    ("template", "names", "message"),
    [
        (
            "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}",
            {"n": 10_000},
            f"the template looped more than {MAX_LOOP_ITERATIONS:,} times",
        ),
        (
            "{{ range(n)|list }}",
            {"n": 100_000},
            f"range() of 100,000 numbers; a template's range() may hold at most {MAX_RANGE:,}",
        ),
        (
            "{% for i in range(5000) %}{{ big }}{% endfor %}",
            {"big": "x" * 10_000},
            f"the rendered text is longer than {MAX_OUTPUT_CHARS:,} characters",
        ),
        (
            "{{ 'x' * n }}",
            {"n": 10**9},
            f"the repeated text or list would be 1,000,000,000 long; a template may make at most {MAX_OUTPUT_CHARS:,}",
        ),
        ("{{ 'x'|center(n) }}", {"n": 10**9}, "center() width would be 1,000,000,000 long"),
        ("{{ '%*d' % (n, 1) }}", {"n": 10**9}, "a formatted field would be 1,000,000,000 long"),
        ("{{ 2 ** n }}", {"n": 10**9}, "the power would have about 301,029,995 digits; the limit is 30,102"),
    ],
)
def test_rendering_is_bounded_in_size(template: str, names: dict[str, object], message: str) -> None:
    with pytest.raises(TemplateLimitError, match="^" + re.escape(message)):
        render_template(template, names)


def test_rendering_is_bounded_in_time() -> None:
    # No loop and no output: 2**40 macro calls; only the deadline stops it.
    doubling = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    with pytest.raises(TemplateLimitError, match=r"^rendering took longer than 0.2 s$"):
        render_template(doubling, {}, timeout_s=0.2)
