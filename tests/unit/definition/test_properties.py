"""Property-based: random and mutated inputs never raise anything but DefinitionError."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskmark.definition import load_definition
from taskmark.errors import DefinitionError

VALID = (Path(__file__).parent / "data" / "valid" / "full.md").read_text(encoding="utf-8")
FRAGMENTS = [
    "## Phase: ",
    "### Steps\n",
    "- agent: writer - ",
    "{{",
    "}}",
    "{%",
    "```yaml\n",
    "```\n",
    "dependsOn: ",
    "parallel: ",
    "[",
    "]",
    ":",
    "\n",
    "- validation: ",
    "&a ",
    "*a",
    "\t",
    "\x00",
    "- aggregate: ",
]


def _load(tmp: Path, data: bytes) -> None:
    path = tmp / "f.md"
    path.write_bytes(data)
    try:
        load_definition(path)
    except DefinitionError as exc:
        assert exc.diagnostics and all(d.line >= 1 for d in exc.diagnostics)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_random_bytes(tmp_path: Path, data: bytes) -> None:
    _load(tmp_path, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(max_size=5), st.sampled_from(FRAGMENTS)), max_size=60))
def test_random_text(tmp_path: Path, parts: list[str]) -> None:
    _load(tmp_path, ("# T\n" + "".join(parts)).encode("utf-8", "surrogatepass"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_valid_definition(tmp_path: Path, data: st.DataObject) -> None:
    text = VALID
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(at, min(len(text), at + 40)))
        insert = data.draw(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=10)))
        text = text[:at] + insert + text[end:]
    _load(tmp_path, text.encode("utf-8", "surrogatepass"))
