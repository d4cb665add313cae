"""Requirements take the bounds outputs take, from the user's side: `taskmark validate` checks
them (and the defaults and scheduled inputs against them), and `taskmark run --param` refuses a
value outside them, naming the input, before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskmark.cli import app
from taskmark.definition import load_definition

runner = CliRunner()

BOUNDED = """# Bounded

```yaml
name: bounded
requirements:
  topic: {type: string, minLength: 3, maxLength: 40, description: What to write about}
  depth: {type: integer, minimum: 1, maximum: 5, default: 2}
  ratio: {type: number, minimum: 0, maximum: 1, default: 0.5}
  tags: {type: array, items: {type: string, maxLength: 8}, minItems: 1, maxItems: 3, default: [news]}
  weights: {type: object, keys: [macro, technical], values: {type: number, minimum: 0}, default: {macro: 1, technical: 0}}
  audience: string
EXTRA```

## Phase: Write

### Steps
- agent: writer - Write about {{ topic }} for {{ audience }}.

### Agents

```yaml
writer:
  systemPrompt: You write.
```
"""


def bounded(extra: str) -> str:
    """The definition, with ``extra`` metadata lines."""
    return BOUNDED.replace("EXTRA", extra)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # Should a check be missing, `run` must not start a local Prefect server: nothing answers here.
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")


def _write(text: str) -> str:
    Path("bounded.md").write_text(text)
    return "bounded.md"


def _at(text: str, needle: str) -> str:
    line = next(i for i, row in enumerate(text.splitlines()) if needle in row)
    return f"{line + 1}:{text.splitlines()[line].index(needle) + 1}"


def test_bounded_requirements_validate() -> None:
    result = runner.invoke(app, ["validate", _write(bounded(""))])
    assert (result.exit_code, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "  bad: {type: string, minimum: 3}",
            "'minimum' does not apply to string; string takes enum, maxLength, minLength",
        ),
        ("  bad: {type: integer, minimum: 5, maximum: 1}", "minimum 5 is more than maximum 1"),
        (
            "  bad: {type: string, maxLength: 3, default: toolong}",
            "default does not fit the bounds: expected at most 3 characters; found 'toolong'",
        ),
        (
            "  bad: {type: array, items: {type: integer, minimum: 2}, default: [3, 1]}",
            "default does not fit the bounds: [1]: expected at least 2; found 1",
        ),
        (
            "  bad: {type: array, items: {type: number, maximum: depth}}",
            "bound 'depth' of an item: the bounds of an input are numbers, not other inputs",
        ),
    ],
    ids=["not-applicable", "min-over-max", "default-too-long", "default-item-too-small", "input-named-bound"],
)
def test_bounds_that_cannot_hold_are_located_errors(line: str, message: str) -> None:
    text = bounded("").replace("  audience: string\n", f"  audience: string\n{line}\n")
    result = runner.invoke(app, ["validate", _write(text)])
    assert result.exit_code == 1
    mapping = line.strip().removeprefix("bad: ")
    assert result.stderr.splitlines()[0] == f"bounded.md:{_at(text, mapping)}: error: requirements.bad: {message}"


def test_a_minimum_that_is_not_a_number_is_an_error_at_its_value() -> None:
    text = bounded("").replace("minimum: 1, maximum: 5", "minimum: one, maximum: 5")
    result = runner.invoke(app, ["validate", _write(text)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"bounded.md:{_at(text, 'one')}: error: requirements.depth.minimum: expected a number; found 'one'"
    )


def test_scheduled_inputs_outside_the_bounds_are_errors() -> None:
    extra = "schedule: {cron: '0 8 * * *', parameters: {topic: ab, audience: all}}\n"
    text = bounded(extra)
    result = runner.invoke(app, ["validate", _write(text)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"bounded.md:{_at(text, 'ab,')}: error: schedule.parameters.topic: expected at least 3 characters; found 'ab'"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["topic=ab"], "topic: expected at least 3 characters; found 'ab'"),
        (["topic=tides", "depth=9"], "depth: expected at most 5; found 9"),
        (["topic=tides", "depth=2.5"], "depth: expected integer; found 2.5"),
        (["topic=tides", "ratio=-0.1"], "ratio: expected at least 0; found -0.1"),
        (
            ["topic=tides", 'tags=["ok", "much-too-long"]'],
            "tags[1]: expected at most 8 characters; found 'much-too-long'",
        ),
        (["topic=tides", "tags=[]"], "tags: expected at least 1 item; found []"),
        (["topic=tides", 'weights={"macro": -1, "technical": 0}'], "weights.macro: expected at least 0; found -1"),
        (["topic=tides", 'weights={"macro": 1}'], "weights: 'technical' is a required property"),
    ],
    ids=[
        "too-short",
        "too-large",
        "not-integer",
        "too-small",
        "item-too-long",
        "too-few-items",
        "value-too-small",
        "missing-key",
    ],
)
def test_run_refuses_a_param_outside_its_bounds_naming_it(params: list[str], message: str) -> None:
    args = [arg for p in [*params, "audience=all"] for arg in ("--param", p)]
    result = runner.invoke(app, ["run", _write(bounded("")), *args])
    assert result.exit_code == 2, result.output
    assert "Invalid value for --param" in result.stderr
    assert " ".join(message.split()) in " ".join(result.stderr.replace("│", " ").split())
    assert "Traceback" not in result.output


def test_a_params_file_is_checked_the_same_way() -> None:
    Path("inputs.json").write_text(json.dumps({"topic": "tides", "audience": "all", "depth": 0}))
    result = runner.invoke(app, ["run", _write(bounded("")), "--params-file", "inputs.json"])
    assert result.exit_code == 2, result.output
    assert "Invalid value for --params-file" in result.stderr
    assert "depth: expected at least 1; found 0" in result.stderr


def test_the_flow_checks_the_bounds_too() -> None:
    """The Python API's runs (and a deployment's) validate through the flow's typed signature."""
    from prefect.exceptions import ParameterTypeError

    from taskmark.flows._compile import compile

    flow = compile(load_definition(_write(bounded(""))))
    assert flow.validate_parameters({"topic": "tides", "audience": "all"})["depth"] == 2
    with pytest.raises(ParameterTypeError, match=r"depth: Value error, expected at most 5; found 7"):
        flow.validate_parameters({"topic": "tides", "audience": "all", "depth": 7})


def test_a_params_file_names_an_unknown_input() -> None:
    Path("inputs.json").write_text(json.dumps({"topic": "tides", "audience": "all", "deph": 2}))
    result = runner.invoke(app, ["run", _write(bounded("")), "--params-file", "inputs.json"])
    assert result.exit_code == 2, result.output
    assert "Invalid value for --params-file" in result.stderr
    said = " ".join(result.stderr.replace("│", " ").split())  # as one line, out of its box
    assert "unknown input 'deph'" in said and "did you mean 'depth'?" in said


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("9", "depth: expected at most 5; found 9"),
        ("2.5", "depth: expected integer; found 2.5"),
    ],
)
def test_every_way_in_says_a_bad_input_in_the_same_words(value: str, said: str) -> None:
    """`--param`, a schedule's parameters and a watch-folder seed check inputs through one model:
    the same words, each pointing where the value was written."""
    from taskmark.watch._seed import check_seed

    cli = runner.invoke(
        app, ["run", _write(bounded("")), "-p", "topic=tides", "-p", "audience=all", "-p", f"depth={value}"]
    )
    seed = f'{{"definition": "bounded.md", "params": {{"topic": "tides", "audience": "all", "depth": {value}}}}}'
    seeded = check_seed(seed, path="s.json", base=Path.cwd())
    scheduled = bounded(
        f"schedule: {{cron: '0 8 * * *', parameters: {{topic: tides, audience: all, depth: {value}}}}}\n"
    )
    validated = runner.invoke(app, ["validate", _write(scheduled)])
    assert said in " ".join(cli.stderr.replace("│", " ").split())
    assert f"{_at(scheduled, value + '}}')}: error: schedule.parameters.{said}" in validated.stderr
    assert [d.msg for d in seeded.diagnostics] == [f"params.{said}"]
