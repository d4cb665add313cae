"""Seed files checked without Prefect: located errors, filled defaults, the duplicate key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskmark.watch import check_seed, deployment_name, read_seed
from taskmark.watch._json_spans import spans_of

DEFINITION = """# Two Steps

```yaml
name: two-steps
requirements:
  topic: string
  rounds: {type: integer, default: 1, maximum: 5}
  tone: {type: string, enum: [dry, warm], default: dry}
```

## Phase: Draft

### Steps
- agent: writer - Draft on {{ topic }}
"""


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "writer.md").write_text("You write.\n")
    (tmp_path / "two.md").write_text(DEFINITION)
    return tmp_path


def messages(text: str, base: Path, **options: str) -> list[str]:
    return [str(d) for d in check_seed(text, path="s-seed.json", base=base, **options).diagnostics]


def test_a_good_seed_has_its_defaults_filled_in(base: Path) -> None:
    check = check_seed('{"definition": "two.md", "params": {"topic": "tides"}}', path="s-seed.json", base=base)
    assert check.ok and check.diagnostics == [] and check.seed is not None
    assert check.seed.params == {"topic": "tides", "rounds": 1, "tone": "dry"}
    assert check.seed.definition_path == base / "two.md" and check.seed.definition.name == "two-steps"
    assert check.seed.id is None and check.seed.rerun is False and check.seed.key.startswith("sha256:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"definition": "two.md",\n  "params": {"topic": "x",}}',
            ["s-seed.json:2:27: error: invalid JSON: Expecting property name enclosed in double quotes"],
        ),
        ("", ["s-seed.json:1:1: error: invalid JSON: the file is empty"]),
        ('{"definition": "two.md"', ["s-seed.json:1:24: error: invalid JSON: Expecting ',' delimiter"]),
        (
            "[1, 2]",
            [
                's-seed.json:1:1: error: expected a JSON object such as {"definition": "flow.md", "params": {}}; found an array'
            ],
        ),
        (
            '{"definition": "two.md", "params": {"topic": "x"},\n "rerun": "yes", "run": 1}',
            [
                "s-seed.json:2:11: error: 'rerun': expected true or false; found \"yes\"",
                "s-seed.json:2:18: error: unknown key 'run'; expected one of definition, params, id, rerun; did you mean 'rerun'?",
            ],
        ),
        (
            '{"params": {"topic": "x"}}',
            ["s-seed.json:1:1: error: missing key 'definition': the definition file to run"],
        ),
        (
            '{"definition": 3}',
            ["s-seed.json:1:16: error: 'definition': expected the path of a definition file; found 3"],
        ),
        (
            '{"definition": "two.md", "params": ["x"]}',
            ["s-seed.json:1:36: error: 'params': expected an object of inputs; found [\"x\"]"],
        ),
        (
            '{"definition": "two.md", "params": {"topic": "x"}, "id": "../etc"}',
            [
                "s-seed.json:1:58: error: 'id': expected letters, digits, '.', '_' or '-' (at most 100, starting with a letter or digit); found \"../etc\""
            ],
        ),
        (
            '{\n  "definition": "two.md",\n  "params": {\n    "topic": 7,\n    "rounds": 1.5,\n    "tone": "cold",\n    "tones": "x"\n  }\n}',
            [
                "s-seed.json:4:14: error: params.topic: expected string; found 7",
                "s-seed.json:5:15: error: params.rounds: expected integer; found 1.5",
                's-seed.json:6:13: error: params.tone: expected one of "dry", "warm"; found "cold"',
                "s-seed.json:7:5: error: params: unknown input 'tones'; the definition's inputs are: topic, rounds, tone; did you mean 'tone'?",
            ],
        ),
        (
            '{"definition": "two.md",\n "params": {"rounds": true}}',
            [
                "s-seed.json:2:2: error: params: missing required input 'topic' (string)",
                "s-seed.json:2:23: error: params.rounds: expected integer; found true",
            ],
        ),
        ('{"definition": "two.md"}', ["s-seed.json:1:1: error: params: missing required input 'topic' (string)"]),
        (
            '{"definition": "two.md", "params": {"topic": "x", "rounds": 9}}',
            ["s-seed.json:1:61: error: params.rounds: expected at most 5; found 9"],
        ),
    ],
    ids=[
        "syntax",
        "empty",
        "truncated",
        "array",
        "rerun-and-unknown-key",
        "no-definition",
        "definition-type",
        "params-type",
        "bad-id",
        "each-param",
        "missing-input",
        "no-params",
        "out-of-bounds",
    ],
)
def test_bad_seeds_have_located_errors(base: Path, text: str, expected: list[str]) -> None:
    assert messages(text, base) == expected


def test_a_missing_definition_names_where_it_looked(base: Path) -> None:
    assert messages('{"definition": "three.md"}', base) == [
        f"s-seed.json:1:16: error: definition 'three.md' not found: no file {base / 'three.md'} (relative paths are read from the watch folder {base})"
    ]


def test_an_invalid_definition_lists_its_own_located_errors(base: Path) -> None:
    (base / "two.md").write_text(DEFINITION.replace("rounds: {type: integer", "rounds: {type: integr"))
    assert messages('{"definition": "two.md", "params": {"topic": "x"}}', base) == [
        "s-seed.json:1:16: error: definition 'two.md' is not valid (1 error, listed below)",
        f"{base / 'two.md'}:7:18: error: requirements.rounds.type: unknown type 'integr'; expected one of string, number, integer, boolean, array, object; did you mean 'integer'?",
    ]


def test_a_deployment_must_be_the_definitions_flow(base: Path) -> None:
    seed = '{"definition": "two.md", "params": {"topic": "x"}}'
    assert messages(seed, base, deployment="prod") == []
    assert messages(seed, base, deployment="two-steps/prod") == []
    assert messages(seed, base, deployment="other/prod") == [
        "s-seed.json:1:16: error: definition 'two.md' is the flow 'two-steps', not 'other' of deployment 'other/prod'"
    ]
    definition = check_seed(seed, path="s", base=base).seed
    assert definition is not None and deployment_name("prod", definition.definition) == "two-steps/prod"


def key(base: Path, seed: dict[str, object]) -> str:
    check = check_seed(json.dumps(seed), path="s-seed.json", base=base)
    assert check.seed is not None, check.message()
    return check.seed.key


def test_the_key_is_the_work_asked_for(base: Path) -> None:
    plain = key(base, {"definition": "two.md", "params": {"topic": "x"}})
    # Key order, spelled-out defaults, rerun and the path spelling do not change the work.
    assert key(base, {"params": {"rounds": 1, "topic": "x"}, "definition": "./two.md", "rerun": True}) == plain
    assert key(base, {"definition": "two.md", "params": {"topic": "y"}}) != plain
    (base / "agents" / "writer.md").write_text("You write tersely.\n")
    edited_agent = key(base, {"definition": "two.md", "params": {"topic": "x"}})
    assert edited_agent != plain
    (base / "two.md").write_text(DEFINITION.replace("Draft on", "Write on"))
    assert key(base, {"definition": "two.md", "params": {"topic": "x"}}) not in (plain, edited_agent)
    assert key(base, {"definition": "two.md", "params": {"topic": "x"}, "id": "daily-1"}) == "id:daily-1"


def test_read_seed_names_the_file_as_asked_and_reports_undecodable_bytes(base: Path) -> None:
    path = base / "s-seed.json"
    path.write_bytes(b'\xef\xbb\xbf{"definition": "two.md", "params": {"topic": "x"}}')  # a BOM is fine
    assert read_seed(path, base=base).ok
    path.write_bytes(b'{"definition": "\xff"}')
    [diagnostic] = read_seed(path, base=base, shown_as="rejected/s-seed.json").diagnostics
    assert str(diagnostic).startswith(
        "rejected/s-seed.json:1:1: error: cannot read the seed: 'utf-8' codec can't decode byte 0xff"
    )


def test_spans_locate_keys_and_values_at_any_depth() -> None:
    spans = spans_of("s-seed.json", '{"a": [1, {"b": "x"}],\n "c": {}}')

    def at(path: tuple[str | int, ...], *, key: bool = False) -> str:
        return str(spans.key(path) if key else spans.value(path))

    assert (at(("a",), key=True), at(("a",))) == ("s-seed.json:1:2", "s-seed.json:1:7")
    assert (at(("a", 1, "b")), at(("a", 1, "b"), key=True)) == ("s-seed.json:1:17", "s-seed.json:1:12")
    assert (at(("c",), key=True), at(("c", "missing"))) == ("s-seed.json:2:2", "s-seed.json:2:7")
    assert at(()) == "s-seed.json:1:1"
